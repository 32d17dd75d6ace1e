"""Empty and degenerate tensors behave as the reference does: N = 0, C = 0, a spatial size 0
(the mean of nothing is NaN, so the gates and the weight gradient are NaN, as in PyTorch),
C = 1, L = 1, and k > C for both padding modes."""

import pytest
import torch

import eca_cuda
from helpers import DEVICES, PADDING_MODES, forward_backward, to_memory_format

CASES = [
    # (shape, k, what it exercises)
    ((0, 8, 4, 4), 3, "N = 0"),
    ((2, 0, 4, 4), 3, "C = 0"),
    ((2, 8, 0, 4), 3, "a spatial size 0: L = 0"),
    ((2, 8, 0), 5, "1-D, L = 0"),
    ((2, 3, 3, 0, 2), 3, "3-D, L = 0"),
    ((3, 1, 4, 4), 5, "C = 1"),
    ((2, 16, 1, 1), 3, "L = 1"),
    ((1, 1, 1), 9, "N = C = L = 1, k > C"),
    ((2, 3, 5), 7, "k > C"),
    ((2, 2, 3, 3), 9, "k > 4 C: circular wraps twice"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("shape, k", [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_degenerate_shapes_match_reference(shape, k, padding_mode, memory_format, dtype, device):
    gen = torch.Generator().manual_seed(0)
    x = to_memory_format(torch.randn(shape, generator=gen, dtype=dtype), memory_format)
    weight = torch.randn(1, 1, k, generator=gen, dtype=dtype)
    grad_y = torch.randn(shape, generator=gen, dtype=dtype)
    x, weight, grad_y = x.to(device), weight.to(device), grad_y.to(device)
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    ref = forward_backward(eca_cuda.reference.eca, x, weight, grad_y, padding_mode)
    for name, a, b in zip(("y", "grad_x", "grad_weight"), ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, equal_nan=True, msg=name)
    assert ours[0].is_contiguous(memory_format=torch.contiguous_format) == x.is_contiguous()


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_mean_of_nothing_is_nan(padding_mode):
    """L = 0: pooled and gate are NaN, as torch.mean of an empty dim gives; y is empty."""
    x = torch.randn(2, 4, 0, 3)
    y, pooled, gate = eca_cuda.ops.eca_forward(x, torch.randn(3), padding_mode)
    assert y.shape == x.shape
    assert pooled.isnan().all() and gate.isnan().all()
