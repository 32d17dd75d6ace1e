"""The CUDA kernels' spatial sums (csrc/cuda/eca_reduce.cuh), run on the CPU by
tests/cuda_reduce_emulation.cpp (one host thread per CUDA thread), so that CI checks without a
GPU what the GPU tests check with one: the contiguous and channels-last kernels give the same
bits, on grids smaller than the work too (the blocks loop), and sums keep float32 accuracy
over several chunks. This checks the kernels' source, not the code nvcc makes of it."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

SOURCE = Path(__file__).with_name("cuda_reduce_emulation.cpp")
ROWS_PER_BLOCK, TILE_C = 4, 32  # as in eca_reduce.cuh


@pytest.fixture(scope="module")
def emulation(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler on this machine")
    lib = tmp_path_factory.mktemp("emulation") / "cuda_reduce_emulation.so"
    flags = ["-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-shared", "-fPIC"]
    subprocess.run([cxx, *flags, str(SOURCE), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def reduce(emulation, a, b, channels_last, grid, scale):
    """(N, C) sums of a (* b), both (N, C, L), read by the emulated contiguous kernel or by the
    channels-last one from an (N, L, C) copy."""
    N, C, L = a.shape
    if channels_last:
        a, b = a.transpose(1, 2).contiguous(), None if b is None else b.transpose(1, 2).contiguous()
    out = torch.full((N, C), -1.0, dtype=a.dtype)
    ctype = ctypes.c_float if a.dtype == torch.float32 else ctypes.c_double
    fn = emulation.reduce_float if a.dtype == torch.float32 else emulation.reduce_double
    fn(
        ctypes.c_void_p(a.data_ptr()),
        ctypes.c_void_p(0 if b is None else b.data_ptr()),
        ctypes.c_int64(N),
        ctypes.c_int64(C),
        ctypes.c_int64(L),
        ctypes.c_int(channels_last),
        ctypes.c_uint(grid),
        ctype(scale),
        ctypes.c_void_p(out.data_ptr()),
    )
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("product", [False, True], ids=["mean", "sum of g x"])
@pytest.mark.parametrize(
    "shape",
    [(2, 40, 4550), (3, 33, 49), (1, 64, 9000), (1, 70, 1), (2, 5, 0)],
    ids=["2 chunks, C % 32 != 0", "7x7", "3 chunks", "L = 1", "L = 0"],
)
@pytest.mark.parametrize("grid", ["one block per item", "2 blocks"])
def test_both_layouts_give_the_same_bits(emulation, shape, product, dtype, grid):
    N, C, L = shape
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(shape, generator=gen, dtype=torch.float64) + 0.3).to(dtype)
    b = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) if product else None
    scale = 1.0 if product else (1.0 / L if L else float("inf"))
    if grid == "2 blocks":
        grids = (2, 2)
    else:
        grids = (-(-N * C // ROWS_PER_BLOCK), N * -(-C // TILE_C))
    rows = reduce(emulation, a, b, 0, grids[0], scale)
    columns = reduce(emulation, a, b, 1, grids[1], scale)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    assert torch.equal(rows.view(bits), columns.view(bits))

    terms = a.double() * (b.double() if product else 1.0)
    if L == 0:  # the mean of nothing is NaN, as torch.mean's; an empty sum is 0
        assert (rows.isnan() if not product else rows == 0).all()
        return
    # Float32 accuracy: the error is a few eps of the sum of |terms| (scaled as the output).
    error = (rows.double() - terms.sum(-1) * scale).abs()
    bound = 4 * torch.finfo(dtype).eps * terms.abs().sum(-1) * scale
    assert (error <= bound).all(), (error / bound).max().item()
