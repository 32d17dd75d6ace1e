"""The C++ autograd kernel of eca_forward (csrc/eca_autograd.cpp): what it differentiates, what
it refuses, and that the Python ECAFunction gives the same bits."""

import pytest
import torch

import eca_cuda
from helpers import DEVICES, PADDING_MODES, make_inputs


def grads(fn, x, weight, grad_y, **kwargs):
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    y = fn(x, weight)
    grad_x, grad_w = torch.autograd.grad(y, (x, weight), grad_y, **kwargs)
    return y, grad_x, grad_w


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_eca_and_eca_function_agree_bitwise(padding_mode, memory_format, device):
    x, weight, grad_y = make_inputs((2, 24, 5, 6), 5, torch.float32, device, memory_format)
    ours = grads(lambda a, b: eca_cuda.eca(a, b, padding_mode), x, weight, grad_y)
    python = grads(lambda a, b: eca_cuda.ECAFunction.apply(a, b, padding_mode), x, weight, grad_y)
    for a, b in zip(ours, python):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_only_y_is_differentiable(device):
    x, weight, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, device, "contiguous")
    y, pooled, gate = eca_cuda.ops.eca_forward(x.requires_grad_(), weight, "zeros")
    assert y.requires_grad and y.grad_fn is not None
    assert not pooled.requires_grad and not gate.requires_grad
    with torch.no_grad():
        assert not eca_cuda.eca(x, weight).requires_grad
    with torch.inference_mode():
        assert torch.equal(eca_cuda.eca(x, weight), y.detach())


@pytest.mark.parametrize("device", DEVICES)
def test_double_backward_raises_but_create_graph_gives_first_order_grads(device):
    """As with torch.autograd.function.once_differentiable: the gradients made with
    create_graph=True are right, and differentiating them raises instead of silently giving
    a wrong (missing) second-order term."""
    x, weight, grad_y = make_inputs((2, 8, 3, 3), 3, torch.float64, device, "contiguous")
    _, gx, gw = grads(eca_cuda.eca, x, weight, grad_y)
    _, gx2, gw2 = grads(eca_cuda.eca, x, weight, grad_y, create_graph=True)
    torch.testing.assert_close(gx2, gx, rtol=0, atol=0)
    torch.testing.assert_close(gw2, gw, rtol=0, atol=0)
    assert gx2.requires_grad
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        gx2.sum().backward()
