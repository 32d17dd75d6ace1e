"""The same values in any memory layout give the same bits (CPU and CUDA): contiguous,
channels_last, transposed spatial dims, slices, an expanded (stride-0) batch, non-dense views;
and aliased or expanded gradients. Contiguous and channels_last are read in place; the others
cost one copy of x (and of grad_y) to the contiguous layout (README, "Reliability")."""

import pytest
import torch

import eca_cuda
from helpers import DEVICES, PADDING_MODES, forward_backward


def layouts(x):
    """(name, tensor equal to x in value, in another layout)."""
    N, C, H, W = x.shape
    wide = torch.zeros(N, C, H, 2 * W, dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    taller = torch.zeros(N, C, 3 * H, W, dtype=x.dtype, device=x.device)
    taller[:, :, 1::3] = x
    return [
        ("channels_last", x.to(memory_format=torch.channels_last)),
        ("transposed spatial", x.transpose(2, 3).contiguous().transpose(2, 3)),
        ("sliced", taller[:, :, 1::3]),
        ("non-dense last dim", wide[..., ::2]),
        (
            "channels_last, sliced channels",
            torch.cat([x, x], 1).to(memory_format=torch.channels_last)[:, :C],
        ),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
# Channels last takes whole samples per thread when they are small (the first two; the second
# with two row sub-chunks per sample) and cuts samples between threads otherwise (the rest):
# rows and channels (the third); channel blocks of one row sub-chunk, whose forward sums go
# down the columns in registers while the layer is under 1 MiB per thread (the fourth) and by
# slot rows past that (the fifth, in float32 and float64 on 2 threads). The CUDA kernels sum in
# chunks of 4096 elements: the last shape has two, and channels that fill no whole warp.
@pytest.mark.parametrize(
    "shape",
    [
        (2, 24, 7, 9),
        (4, 32, 28, 28),
        (3, 130, 40, 33),
        (1, 300, 7, 7),
        (1, 2048, 16, 17),
        (2, 40, 70, 65),
    ],
    ids=str,
)
@pytest.mark.parametrize("device", DEVICES)
def test_every_layout_gives_the_contiguous_bits(device, shape, padding_mode, dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) + 0.3).to(device, dtype)
    grad_y = torch.randn(shape, generator=gen).to(device, dtype)
    weight = torch.randn(1, 1, 5, generator=gen).to(device, dtype)
    want = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    for name, x_in in layouts(x):
        for grad_name, g_in in [("contiguous grad", grad_y), *layouts(grad_y)[:2]]:
            got = forward_backward(eca_cuda.eca, x_in, weight, g_in, padding_mode)
            for part, a, b in zip(("y", "grad_x", "grad_weight"), got, want):
                assert torch.equal(a, b), (name, grad_name, part)
        # The output keeps a native input's layout (as torch.empty_like).
        if x_in.is_contiguous(memory_format=torch.channels_last):
            assert got[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_expanded_batch_and_gradients(device):
    """A stride-0 batch (x.expand) and the stride-0 grad_y of y.sum().backward()."""
    x1 = torch.randn(1, 16, 5, 5, device=device)
    x = x1.expand(4, -1, -1, -1)
    weight = torch.randn(3, device=device)
    ones = torch.ones((), device=device).expand(4, 16, 5, 5)
    got = forward_backward(eca_cuda.eca, x, weight, ones, "zeros")
    want = forward_backward(eca_cuda.eca, x.contiguous(), weight, ones.contiguous(), "zeros")
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert torch.equal(got[0][0], got[0][3])  # every copy of the sample gets the same bits


@pytest.mark.parametrize("device", DEVICES)
def test_grad_y_aliasing_x(device):
    """eca_backward reads grad_y and x only: the same tensor may be passed for both."""
    x = torch.randn(2, 32, 6, 6, device=device)
    weight = torch.randn(3, device=device)
    y, pooled, gate = eca_cuda.ops.eca_forward(x, weight, "zeros")
    aliased = eca_cuda.ops.eca_backward(x, x, weight, pooled, gate, "zeros")
    separate = eca_cuda.ops.eca_backward(x.clone(), x, weight, pooled, gate, "zeros")
    for a, b in zip(aliased, separate):
        assert torch.equal(a, b)
    assert y.data_ptr() != x.data_ptr()
