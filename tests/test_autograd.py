"""The C++ autograd kernel of eca_forward (csrc/eca_autograd.cpp): what it differentiates and
what it refuses. That it gives the bits of the Python ECAFunction is in test_entry.py."""

import pytest
import torch

import eca_cuda
from helpers import DEVICES, forward_backward, make_inputs


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
    _, gx, gw = forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros")
    _, gx2, gw2 = forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros", create_graph=True)
    torch.testing.assert_close(gx2, gx, rtol=0, atol=0)
    torch.testing.assert_close(gw2, gw, rtol=0, atol=0)
    assert gx2.requires_grad
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        gx2.sum().backward()


class _NoGradient(torch.autograd.Function):
    """Identity whose backward gives its input no gradient (None)."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return None


@pytest.mark.parametrize("entry", ["eca", "ECAFunction"])
@pytest.mark.parametrize("device", DEVICES)
def test_no_gradient_reaching_y_gives_the_references_grads(device, entry):
    """Neither the C++ kernel nor ECAFunction has autograd fill zeros for gradients they never
    get (pooled, gate, or y when nothing reaches it): x gets only its other path's gradient and
    the weight none, as through the reference's ATen ops."""
    ours = eca_cuda.eca if entry == "eca" else eca_cuda.ECAFunction.apply
    grads = []
    for fn in (ours, eca_cuda.reference.eca):
        x, weight, _ = make_inputs((2, 8, 3, 3), 3, torch.float32, device, "contiguous")
        x.requires_grad_()
        weight.requires_grad_()
        (_NoGradient.apply(fn(x, weight)).sum() + x.sum()).backward()
        grads.append((x.grad, weight.grad))
    (gx, gw), (ref_gx, ref_gw) = grads
    torch.testing.assert_close(gx, ref_gx, rtol=0, atol=0)
    assert gw is None and ref_gw is None
