"""Forward and both gradients of the fused op against the float64 reference, on every device,
dtype, memory format, padding mode, kernel size and an intentional set of shapes."""

import math

import pytest
import torch

import eca_cuda
from helpers import (
    DEVICES,
    MEMORY_FORMATS,
    PADDING_MODES,
    check_against_reference,
    forward_backward,
    make_inputs,
)

SHAPES = [
    (2, 8, 5, 6),  # 2-D spatial, the common case
    (3, 1, 4, 4),  # C = 1: every tap but the centre reads padding
    (2, 3, 5, 5),  # C < k for k >= 5 (circular wraps more than once at k = 9)
    (2, 16, 1, 1),  # L = 1: the mean is the value itself
    (1, 13, 7, 9),  # N = 1, odd C and odd spatial sizes
    (4, 10, 17),  # 1-D spatial (sequences)
    (2, 6, 3, 4, 5),  # 3-D spatial (video / volumes, channels_last_3d)
    (2, 70, 3, 3),  # C > 64: more than one channel block in the CPU channels-last kernel
    (0, 8, 4, 4),  # N = 0: empty batch
]
KERNEL_SIZES = [1, 3, 5, 7, 9]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("k", KERNEL_SIZES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_float64_reference(shape, k, padding_mode, memory_format, dtype, device):
    x, weight, grad_y = make_inputs(shape, k, dtype, device, memory_format)
    y, grad_x, grad_w = check_against_reference(x, weight, grad_y, padding_mode)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.stride() == torch.empty_like(x).stride()  # memory format kept, as empty_like
    assert grad_x.stride() == torch.empty_like(x).stride()
    assert grad_w.shape == weight.shape and grad_w.dtype == weight.dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_float32_weight_with_half_input(padding_mode, memory_format, dtype, device):
    """Under autocast the weight stays float32 while x is half; grad_weight stays float32."""
    x, weight, grad_y = make_inputs((2, 24, 6, 6), 5, dtype, device, memory_format, torch.float32)
    y, grad_x, grad_w = check_against_reference(x, weight, grad_y, padding_mode)
    assert y.dtype == dtype and grad_x.dtype == dtype and grad_w.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed, padding_mode, memory_format, device):
    for shape, k in [((2, 5, 3, 2), 3), ((2, 2, 3), 5), ((1, 7, 2, 2, 2), 7)]:
        x, weight, _ = make_inputs(shape, k, torch.float64, device, memory_format, seed=seed)
        x.requires_grad_()
        weight.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda x, w: eca_cuda.eca(x, w, padding_mode), (x, weight), eps=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_opcheck(padding_mode, memory_format, dtype, device):
    """Registration, fake kernels and AOT dispatch of both operators; eca_forward with inputs
    that require grad, so that its C++ autograd kernel is checked too."""
    x, weight, grad_y = make_inputs((2, 12, 4, 3), 5, dtype, device, memory_format, torch.float32)
    y, pooled, gate = eca_cuda.ops.eca_forward(x, weight, padding_mode)
    x_leaf, w_leaf = x.detach().requires_grad_(), weight.detach().requires_grad_()
    torch.library.opcheck(torch.ops.eca_cuda.eca_forward.default, (x_leaf, w_leaf, padding_mode))
    torch.library.opcheck(
        torch.ops.eca_cuda.eca_backward.default, (grad_y, x, weight, pooled, gate, padding_mode)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_golden_hand_computed(device):
    """N = 1, C = 3, k = 3, L = 1, worked out by hand: p = x, z = conv(p), y = x * sigmoid(z)."""
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, device=device).view(1, 3, 1)
    w = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64, device=device)
    # zeros: z0 = 1*0 - 1*1 + 0.5*2 = 0; z1 = 1*1 - 1*2 + 0.5*3 = 0.5; z2 = 1*2 - 1*3 + 0 = -1
    # circular: z0 = 1*3 - 1*1 + 0.5*2 = 3; z1 = 0.5; z2 = 1*2 - 1*3 + 0.5*1 = -0.5
    for mode, z in [("zeros", [0.0, 0.5, -1.0]), ("circular", [3.0, 0.5, -0.5])]:
        xr = x.clone().requires_grad_()
        wr = w.clone().requires_grad_()
        y = eca_cuda.eca(xr, wr, mode)
        s = [sig(v) for v in z]
        expected_y = [1.0 * s[0], 2.0 * s[1], 3.0 * s[2]]
        torch.testing.assert_close(y.flatten().tolist(), expected_y, rtol=1e-14, atol=1e-14)
        # With grad_y = 1 and L = 1: t = x, dz = t s (1 - s), dw[j] = sum_c dz[c] p[c + j - 1].
        y.sum().backward()
        dz = [xc * sc * (1 - sc) for xc, sc in zip([1.0, 2.0, 3.0], s)]
        p = {0: 1.0, 1: 2.0, 2: 3.0}
        wrap = (lambda c: c % 3) if mode == "circular" else (lambda c: c)
        expected_dw = [sum(dz[c] * p.get(wrap(c + j - 1), 0.0) for c in range(3)) for j in range(3)]
        torch.testing.assert_close(wr.grad.tolist(), expected_dw, rtol=1e-14, atol=1e-14)
        # dx[c] = s[c] + dp[c] with dp[c] = sum_j w[j] dz[c - j + 1].
        wl = w.tolist()
        expected_dx = [
            s[c] + sum(wl[j] * dz[wrap(c - j + 1)] for j in range(3) if 0 <= wrap(c - j + 1) < 3)
            for c in range(3)
        ]
        torch.testing.assert_close(xr.grad.flatten().tolist(), expected_dx, rtol=1e-14, atol=1e-14)


# Large enough that the CPU kernels cut the work: contiguous rows into several cache chunks
# (tap windows across chunk edges), channels_last rows into several chunks per sample and
# samples into several groups.
TILED_SHAPES = [(2, 40, 96, 96), (3, 4, 300, 300)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("shape", TILED_SHAPES, ids=str)
def test_tiled_shapes_match_reference(shape, padding_mode, memory_format, dtype):
    x, weight, grad_y = make_inputs(shape, 5, dtype, "cpu", memory_format)
    check_against_reference(x, weight, grad_y, padding_mode)


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k", [5, 7])
@pytest.mark.parametrize("shape", [(4, 96, 14, 14), (1, 2048, 7, 7), *TILED_SHAPES], ids=str)
def test_bitwise_identical_across_cpu_thread_counts(shape, k, memory_format):
    # (1, 2048, 7, 7): the threads' row ranges meet inside a sample, so each range's last
    # rows have a tap window reaching into the next range.
    x, weight, grad_y = make_inputs(shape, k, torch.float32, "cpu", memory_format)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            results.append(forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros"))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def assert_same_non_finite(ours, ref):
    """NaN and +/-inf at the same positions, with the same signs, in (y, grad_x, grad_weight)."""
    for name, a, b in zip(("y", "grad_x", "grad_weight"), ours, ref):
        assert torch.equal(a.isnan(), b.isnan()), name
        assert torch.equal(a.isinf(), b.isinf()), name
        assert torch.equal(a[a.isinf()], b[b.isinf()]), name  # same signs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_non_finite_values_propagate_like_reference(memory_format, device):
    """NaN and +/-inf in x give non-finite outputs and gradients exactly where the reference
    has them (a NaN or infinite channel mean poisons its neighbours' gates)."""
    x, weight, grad_y = make_inputs((2, 40, 3, 3), 3, torch.float32, "cpu", memory_format)
    x = x.clone()
    x[0, 3, 0, 0], x[0, 10, 1, 1], x[1, 20, 2, 2] = float("nan"), float("inf"), -float("inf")
    x[1, 30], x[1, 35] = 1e30, -1e30  # finite, but the gates saturate
    x, weight, grad_y = x.to(device), weight.to(device), grad_y.to(device)
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros")
    ref = forward_backward(eca_cuda.reference.eca, x, weight, grad_y, "zeros")
    assert_same_non_finite(ours, ref)


def test_circular_matches_timm_circular_pad():
    """Our reference's circular gather equals timm's CecaModule (F.pad circular + conv1d)."""
    x = torch.randn(3, 11, 4, 4, dtype=torch.float64)
    w = torch.randn(1, 1, 5, dtype=torch.float64)
    p = x.mean((2, 3)).view(3, 1, -1)
    z = torch.nn.functional.conv1d(torch.nn.functional.pad(p, (2, 2), mode="circular"), w)
    expected = x * torch.sigmoid(z).view(3, -1, 1, 1)
    torch.testing.assert_close(eca_cuda.reference.eca(x, w, "circular"), expected)
    torch.testing.assert_close(eca_cuda.eca(x, w, "circular"), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(
    "taps",
    [
        [float("nan"), 1.0, 1.0],  # poisons every gate whose window reads a channel
        [1.0, float("nan"), 1.0],
        [1.0, 1.0, float("inf")],  # saturates gates; inf * 0 where a channel mean is 0
        [-float("inf"), 0.5, 1.0],
    ],
    ids=["nan-edge", "nan-centre", "inf-edge", "neg-inf-edge"],
)
def test_non_finite_weight_propagates_like_reference(taps, padding_mode, device):
    """NaN and +/-inf in the weight give non-finite outputs and gradients exactly where the
    reference has them, padding included (a padded tap never multiplies the weight)."""
    x, _, grad_y = make_inputs((2, 12, 3, 3), 3, torch.float32, "cpu", "contiguous")
    x = x.clone()
    x[1, 4] = torch.tensor([[1.0, -1.0, 0.0]] * 3)  # a channel whose mean is exactly 0
    weight = torch.tensor(taps).view(1, 1, 3)
    x, weight, grad_y = x.to(device), weight.to(device), grad_y.to(device)
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    ref = forward_backward(eca_cuda.reference.eca, x, weight, grad_y, padding_mode)
    assert_same_non_finite(ours, ref)
    for name, a, b in zip(("y", "grad_x", "grad_weight"), ours, ref):
        torch.testing.assert_close(a, b, equal_nan=True, msg=name)
