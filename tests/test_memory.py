"""Forward and backward allocate nothing of the feature map's size beyond y and grad_x: on CPU
from the profiler's memory records, on CUDA from the caching allocator's peak."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import eca_cuda
from helpers import to_memory_format

SHAPE = (4, 64, 32, 32)  # channels_last cuts it into several row chunks per sample


def allocations(prof, op_name):
    """Sizes in bytes of every allocation made inside the first call of ``op_name``."""
    op = next(e for e in prof.events() if e.name == op_name)
    start, end = op.time_range.start, op.time_range.end
    return [
        e.self_cpu_memory_usage
        for e in prof.events()
        if start <= e.time_range.start and e.time_range.end <= end and e.self_cpu_memory_usage > 0
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_cpu_allocates_only_the_outputs_and_small_scratch(memory_format, dtype):
    x = to_memory_format(torch.randn(SHAPE, dtype=dtype), memory_format).requires_grad_()
    weight = torch.randn(5, dtype=dtype, requires_grad=True)
    grad_y = torch.randn_like(x)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        eca_cuda.eca(x, weight).backward(grad_y)
    N, C = SHAPE[:2]
    small = 64 * N * C * 4  # (N, C) float32 stats and scratch: a few of them at most
    for op_name in ("eca_cuda::eca_forward", "eca_cuda::eca_backward"):
        sizes = allocations(prof, op_name)
        big = [s for s in sizes if s >= x.nbytes]
        assert big == [x.nbytes], (op_name, sizes)  # y, or grad_x: nothing else map-sized
        assert sum(sizes) - x.nbytes <= small, (op_name, sizes)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_cuda_peak_memory_is_outputs_and_small_scratch(memory_format):
    x = to_memory_format(torch.randn(SHAPE, device="cuda"), memory_format).requires_grad_()
    weight = torch.randn(5, device="cuda", requires_grad=True)
    grad_y = torch.randn_like(x)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = eca_cuda.eca(x, weight)
    forward_peak = torch.cuda.max_memory_allocated() - base
    (grad_x,) = torch.autograd.grad(y, (x,), grad_y)
    full_peak = torch.cuda.max_memory_allocated() - base
    N, C = SHAPE[:2]
    small = 64 * N * C * 4 + 4096
    assert forward_peak <= x.nbytes + small
    assert full_peak <= 2 * x.nbytes + small  # y and grad_x both alive at the end
    assert grad_x.shape == x.shape
