"""The ways into the operator: eca()'s eager calls take _C.forward_y (csrc/eca_python.cpp),
anything with __torch_function__ takes torch.ops, and the Python ECAFunction calls the
operators below its own autograd; all reach the same kernels and give the same bits."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

import eca_cuda
from eca_cuda import _C
from helpers import DEVICES, PADDING_MODES, forward_backward, make_inputs

OP = torch.ops.eca_cuda.eca_forward.default


OTHER_WAYS_IN = {
    "torch.ops": lambda x, weight, padding_mode: OP(x, weight, padding_mode)[0],
    "ECAFunction": eca_cuda.ECAFunction.apply,
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("other", OTHER_WAYS_IN)
def test_eca_and_other_ways_in_agree_bitwise(other, padding_mode, memory_format, device):
    x, weight, grad_y = make_inputs((2, 24, 5, 6), 5, torch.float32, device, memory_format)
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    theirs = forward_backward(OTHER_WAYS_IN[other], x, weight, grad_y, padding_mode)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ours[0].stride() == theirs[0].stride() == x.stride()


def test_plain_tensors_take_the_eager_entry(monkeypatch):
    calls, forward_y = [], _C.forward_y

    def spy(*args):
        calls.append(args)
        return forward_y(*args)

    monkeypatch.setattr(_C, "forward_y", spy)
    x, weight, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "contiguous")
    eca_cuda.eca(x, weight)
    eca_cuda.ECA(kernel_size=3)(x)  # the module's weight is an nn.Parameter
    assert len(calls) == 2


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
    assert OP in mode.funcs
    torch.testing.assert_close(y, eca_cuda.eca(x, weight, "circular"), rtol=0, atol=0)


def test_fx_symbolic_trace_records_the_operator():
    layer = eca_cuda.ECA(kernel_size=3)
    graph_module = torch.fx.symbolic_trace(layer)
    targets = [node.target for node in graph_module.graph.nodes if node.op == "call_function"]
    assert OP in targets
    x, _, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "contiguous")
    torch.testing.assert_close(graph_module(x), layer(x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # deprecated, still used
def test_jit_trace_records_the_operator():
    """Tracing runs eager code, so the eager entry is what the tracer sees."""
    layer = eca_cuda.ECA(kernel_size=3)
    x, _, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, "cpu", "channels_last")
    traced = torch.jit.trace(layer, (x,))
    assert "eca_cuda::eca_forward" in [node.kind() for node in traced.graph.nodes()]
    torch.testing.assert_close(traced(x), layer(x), rtol=0, atol=0)
