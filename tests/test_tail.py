"""eca_tail: ECA with the residual block's tail, act(eca(x) * scale + residual), against the
unfused reference (forward and every gradient, each dtype, layout and padding mode), its
bits against the plain op, what it saves for the backward, its errors, and the ways a model
runs it (torch.compile, torch.export)."""

from __future__ import annotations

import pytest
import torch

import eca_cuda
from helpers import (
    DEVICES,
    MEMORY_FORMATS,
    PADDING_MODES,
    assert_close_to_reference,
    make_inputs,
    needs_cpp_compiler,
    to_memory_format,
)

# name -> (residual?, scale, gain (None: a float scale only), activation)
TAILS = {
    "resnet": (True, 1.0, None, "relu"),
    "normfree": (True, 0.4, None, "none"),
    "skipinit gain": (True, 0.4, 0.7, "none"),
    "no residual": (False, 2.0, None, "relu"),
}


def tail_inputs(shape, dtype, device, memory_format, tail, residual_format=None):
    has_residual, scale, gain, activation = TAILS[tail]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, grad = make_inputs(shape, 3, dtype, device, memory_format, weight_dtype=acc)
    gen = torch.Generator().manual_seed(1)
    residual = None
    if has_residual:
        residual = torch.randn(shape, generator=gen).to(device, dtype)
        residual = to_memory_format(residual, residual_format or memory_format)
    g = None if gain is None else torch.tensor(gain, dtype=acc, device=device)
    return x, weight, residual, scale if g is None else g * scale, activation, grad


def run(fn, x, weight, residual, scale, activation, grad, padding_mode="zeros"):
    """out and the gradients of every input that takes one (x, weight, residual, scale)."""
    leaves = [x.detach().requires_grad_(), weight.detach().requires_grad_()]
    if residual is not None:
        leaves.append(residual.detach().requires_grad_())
    if isinstance(scale, torch.Tensor):
        leaves.append(scale.detach().requires_grad_())
    r = leaves[2] if residual is not None else None
    s = leaves[-1] if isinstance(scale, torch.Tensor) else scale
    out = fn(leaves[0], leaves[1], r, s, activation, padding_mode)
    return [out, *torch.autograd.grad(out, leaves, grad)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tail", TAILS)
def test_tail_matches_unfused_reference(tail, dtype, memory_format, padding_mode, device):
    inputs = tail_inputs((2, 24, 6, 7), dtype, device, memory_format, tail)
    ours = run(eca_cuda.eca_tail, *inputs, padding_mode)
    up = [t.double() if isinstance(t, torch.Tensor) else t for t in inputs]
    ref64 = run(eca_cuda.reference.eca_tail, *up, padding_mode)
    ref_lowp = run(eca_cuda.reference.eca_tail, *inputs, padding_mode)
    assert ours[0].dtype == dtype and ours[0].shape == inputs[0].shape
    names = ["out", "grad_x", "grad_weight", "grad_residual", "grad_scale"]
    for name, *values in zip(names, ours, ref64, ref_lowp):
        assert_close_to_reference(*values, dtype, name)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("residual_format", ["contiguous", "channels_last", "strided"])
def test_gradcheck(tail, residual_format):
    x, weight, residual, scale, activation, _ = tail_inputs(
        (2, 5, 3, 4), torch.float64, "cpu", "channels_last", tail, residual_format
    )
    leaves = [x.requires_grad_(), weight.requires_grad_()]
    if residual is not None:
        leaves.append(residual.requires_grad_())
    if isinstance(scale, torch.Tensor):
        leaves.append(scale.requires_grad_())

    def fn(*args):
        r = args[2] if residual is not None else None
        s = args[-1] if isinstance(scale, torch.Tensor) else scale
        return eca_cuda.eca_tail(args[0], args[1], r, s, activation, "circular")

    assert torch.autograd.gradcheck(fn, leaves)


def bits(t):
    return t.contiguous().view(torch.int32 if t.element_size() == 4 else torch.int16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_without_a_tail_it_is_the_plain_layer_bit_for_bit(dtype, memory_format):
    x, weight, grad = make_inputs((2, 32, 9, 9), 5, dtype, "cpu", memory_format)
    plain = run(lambda x, w, r, s, a, p: eca_cuda.eca(x, w, p), x, weight, None, 1.0, "", grad)
    tail = run(eca_cuda.eca_tail, x, weight, None, 1.0, "none", grad)
    for u, v in zip(plain, tail):
        assert torch.equal(bits(u), bits(v))


@pytest.mark.parametrize("tail", TAILS)
def test_layouts_and_repeats_give_the_same_bits(tail):
    """Contiguous and channels_last, and a second run: the same bits (the canonical sums).
    A tensor gain's gradient is ATen's sum, whose order follows the layout: the same bits on
    a repeat only."""
    results = []
    for memory_format in ("contiguous", "channels_last", "channels_last"):
        inputs = tail_inputs((3, 48, 14, 14), torch.float32, "cpu", memory_format, tail)
        results.append(run(eca_cuda.eca_tail, *inputs))
    for u, v in zip(results[1], results[2]):
        assert torch.equal(bits(u), bits(v))
    layout_free = 4  # out, grad_x, grad_weight, grad_residual
    for u, v in zip(results[0][:layout_free], results[1][:layout_free]):
        assert torch.equal(bits(u), bits(v))


def saved_sizes(fn):
    """Sizes (in elements) of every tensor autograd saves while fn() runs."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sizes


@pytest.mark.parametrize("activation, big", [("relu", 2), ("none", 1)])
def test_saves_no_more_than_the_unfused_block(activation, big):
    """x and, for ReLU, its output (what relu saves unfused): no more map-sized tensors."""
    x, weight, grad = make_inputs((2, 16, 8, 8), 3, torch.float32, "cpu", "contiguous")
    x.requires_grad_()
    residual = torch.randn_like(x, requires_grad=True)
    ours = saved_sizes(lambda: eca_cuda.eca_tail(x, weight, residual, 1.0, activation))
    unfused = saved_sizes(lambda: eca_cuda.reference.eca_tail(x, weight, residual, 1.0, activation))
    assert sum(s >= x.numel() for s in ours) == big
    assert sum(ours) <= sum(unfused)


def test_errors_name_the_argument():
    x = torch.randn(2, 8, 4, 4)
    w = torch.randn(3)
    with pytest.raises(ValueError, match="residual must match x"):
        eca_cuda.eca_tail(x, w, torch.randn(2, 8, 4, 5))
    with pytest.raises(ValueError, match="residual must match x"):
        eca_cuda.eca_tail(x, w, torch.randn(2, 8, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="gain must be a 0-d"):
        eca_cuda.eca_tail(x, w, None, torch.ones(1))
    with pytest.raises(ValueError, match="activation must be 'none' or 'relu'"):
        eca_cuda.eca_tail(x, w, None, 1.0, "gelu")
    with pytest.raises(ValueError, match="weight must have an odd number of taps"):
        eca_cuda.eca_tail(x, torch.randn(4), x)
    with pytest.raises(ValueError, match="padding_mode"):
        eca_cuda.eca_tail(x, w, x, 1.0, "relu", "reflect")
    with pytest.raises(RuntimeError, match="residual must be on x's device"):
        eca_cuda.eca_tail(x, w, torch.randn(2, 8, 4, 4, device="meta"))


def test_double_backward_raises():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    r = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = eca_cuda.eca_tail(x, torch.randn(3), r, 1.0, "relu")
    (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        grad_x.sum().backward()


def test_relu_keeps_nan():
    x = torch.randn(1, 4, 3, 3)
    r = torch.zeros_like(x)
    r[0, 1, 1, 1] = float("nan")
    out = eca_cuda.eca_tail(x, torch.randn(3), r, 1.0, "relu")
    assert out[0, 1, 1, 1].isnan() and out.isnan().sum() == 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_tail_backward_is_the_mask_then_the_backward(memory_format, dtype, device):
    """eca_tail_backward (ResNet's tail: ReLU, scale 1, no gain): grad_pre is ReLU's backward
    as ATen's threshold_backward, and grad_x, grad_weight are eca_backward's of it, bit for bit;
    the op passes opcheck (registration, fake kernel, AOT dispatch)."""
    x, weight, grad = make_inputs((2, 16, 5, 6), 3, dtype, device, memory_format, torch.float32)
    residual = to_memory_format(torch.randn(x.shape).to(device, dtype), memory_format)
    out, pooled, gate = eca_cuda.ops.eca_tail_forward(x, weight, residual, 1.0, None, "relu")
    assert (out == 0).any() and (out > 0).any()
    args = (grad, x, weight, pooled, gate, out, "zeros")
    grad_x, grad_weight, grad_pre = eca_cuda.ops.eca_tail_backward(*args)
    expected_pre = torch.ops.aten.threshold_backward(grad, out, 0)
    expected = eca_cuda.ops.eca_backward(expected_pre, x, weight, pooled, gate, "zeros")
    for u, v in zip((grad_x, grad_weight, grad_pre), (*expected, expected_pre)):
        assert torch.equal(bits(u), bits(v))
    assert grad_pre.stride() == x.stride()
    torch.library.opcheck(torch.ops.eca_cuda.eca_tail_backward.default, args)


def test_tail_backward_errors_name_the_argument():
    x, weight, grad = make_inputs((2, 8, 4, 4), 3, torch.float32, "cpu", "contiguous")
    out, pooled, gate = eca_cuda.ops.eca_tail_forward(x, weight, x, 1.0, None, "relu")
    backward = eca_cuda.ops.eca_tail_backward
    with pytest.raises(ValueError, match="out must match x"):
        backward(grad, x, weight, pooled, gate, out[:, :4])
    with pytest.raises(ValueError, match="grad_out must match x"):
        backward(grad.double(), x, weight, pooled, gate, out)
    with pytest.raises(ValueError, match="pooled and gate must be"):
        backward(grad, x, weight, pooled[:1], gate, out)
    with pytest.raises(RuntimeError, match="out must be on x's device"):
        backward(grad, x, weight, pooled, gate, out.to("meta"))


@needs_cpp_compiler
@pytest.mark.slow
@pytest.mark.parametrize("tail", ["skipinit gain", "resnet"])
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device, tail):
    inputs = tail_inputs((2, 16, 8, 8), torch.float32, device, "channels_last", tail)
    compiled = torch.compile(eca_cuda.eca_tail, fullgraph=True)
    torch._dynamo.reset()
    for ours, eager in zip(run(compiled, *inputs), run(eca_cuda.eca_tail, *inputs)):
        torch.testing.assert_close(ours, eager, rtol=1e-5, atol=1e-6)


def test_export_keeps_one_call_and_matches():
    class Tail(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.eca = eca_cuda.ECA(kernel_size=3)

        def forward(self, x, residual):
            return self.eca.tail(x, residual, 0.5, None, "relu")

    model = Tail()
    x, r = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    program = torch.export.export(model, (x, r))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count("eca_cuda.eca_tail_forward.default") == 1
    torch.testing.assert_close(program.module()(x, r), model(x, r))
