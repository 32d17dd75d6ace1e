"""The ways into the operator: eca() calls torch.ops.eca_cuda.eca_forward, whose autograd
kernel is in C++ (csrc/eca_autograd.cpp); the Python ECAFunction calls the operators below
its own autograd. Both reach the same kernels and give the same bits, and tracers (torch
function modes, FX, torch.jit.trace) see the operator."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

import eca_cuda
from helpers import DEVICES, PADDING_MODES, forward_backward, make_inputs

PACKET = torch.ops.eca_cuda.eca_forward
OP = PACKET.default


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_eca_and_ECAFunction_agree_bitwise(padding_mode, memory_format, device):
    x, weight, grad_y = make_inputs((2, 24, 5, 6), 5, torch.float32, device, memory_format)
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    theirs = forward_backward(eca_cuda.ECAFunction.apply, x, weight, grad_y, padding_mode)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ours[0].stride() == theirs[0].stride() == x.stride()


class RecordingMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.funcs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.funcs.append(func)
        return func(*args, **(kwargs or {}))


def test_torch_function_mode_sees_the_operator():
    x, weight, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "channels_last")
    with RecordingMode() as mode:
        y = eca_cuda.eca(x, weight, "circular")
    assert {PACKET, OP} & set(mode.funcs)
    torch.testing.assert_close(y, eca_cuda.eca(x, weight, "circular"), rtol=0, atol=0)


def test_fx_symbolic_trace_records_the_operator():
    layer = eca_cuda.ECA(kernel_size=3)
    graph_module = torch.fx.symbolic_trace(layer)
    targets = [node.target for node in graph_module.graph.nodes if node.op == "call_function"]
    assert {PACKET, OP} & set(targets)
    x, _, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "contiguous")
    torch.testing.assert_close(graph_module(x), layer(x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # deprecated, still used
def test_jit_trace_records_the_operator():
    layer = eca_cuda.ECA(kernel_size=3)
    x, _, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "channels_last")
    traced = torch.jit.trace(layer, (x,))
    assert "eca_cuda::eca_forward" in [node.kind() for node in traced.graph.nodes()]
    torch.testing.assert_close(traced(x), layer(x), rtol=0, atol=0)
