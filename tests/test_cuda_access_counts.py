"""Exact memory access counts of the CUDA kernels without a GPU: the emulation built with every
load and store reported to cuda_emulation/access_counter.cpp, which groups them into warp
requests and counts global 32-byte sectors and shared-memory wavefronts against the ideal, as
Nsight Compute does (sectors per request, bank conflicts).

The counter is checked on kernels whose costs the CUDA programming guide's rules give
(cuda_emulation/access_check.cpp): coalesced, strided and broadcast global loads, 16-byte
accesses, shared stores without and with bank conflicts, 16-byte shared loads; a planted
strided load and planted conflicts show as such. Then every kernel of csrc/cuda/ runs under it,
in both layouts and both plans, and every access site it reports is a real cost (at least the
ideal). benchmarks/cuda_access_counts.py writes the table of docs/cuda-kernels.md from it."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
import torch

from emulated_cuda import CSRC, Emulation, build, build_counting, compiler
from helpers import make_inputs

pytestmark = pytest.mark.skipif(
    compiler() is None or shutil.which("addr2line") is None,
    reason="needs a C++ compiler and addr2line",
)

# case -> (which, {(space, kind, bytes per lane): (units, ideal)}) for one warp's request.
CASES = {
    "coalesced 4-byte loads": (0, {("global", "load", 4): (4, 4), ("global", "store", 4): (4, 4)}),
    "planted strided load (128 bytes apart)": (1, {("global", "load", 4): (32, 4)}),
    "broadcast": (2, {("global", "load", 4): (1, 1)}),
    "coalesced 16-byte copies": (
        3,
        {("global", "load", 16): (16, 16), ("global", "store", 16): (16, 16)},
    ),
    "shared stores, a word per bank": (4, {("shared", "store", 4): (1, 1)}),
    "planted 32-way bank conflict": (5, {("shared", "store", 4): (32, 1)}),
    "planted 2-way bank conflict": (6, {("shared", "store", 4): (2, 1)}),
    "padded rows (33 words)": (7, {("shared", "store", 4): (1, 1)}),
    "16-byte shared loads, consecutive": (8, {("shared", "load", 16): (4, 4)}),
    "16-byte shared loads, 128 bytes apart": (9, {("shared", "load", 16): (32, 4)}),
}


@pytest.fixture(scope="module")
def cases_library(tmp_path_factory):
    path = build_counting(tmp_path_factory.mktemp("access") / "cases.so", ["access_check.cpp"])
    lib = ctypes.CDLL(str(path))
    lib.eca_emu_count_report.restype = ctypes.c_char_p
    lib.emu_access_error.restype = ctypes.c_char_p
    return lib


@pytest.mark.parametrize("case", CASES)
def test_counter_gives_the_guides_costs(cases_library, case):
    which, expected = CASES[case]
    lib = cases_library
    data = torch.arange(32 * 33 * 4 * 4, dtype=torch.float32)
    out = torch.zeros_like(data)
    for t in (data, out):
        lib.eca_emu_count_global(ctypes.c_void_p(t.data_ptr()), ctypes.c_size_t(t.nbytes))
    lib.eca_emu_count_reset()
    try:
        rc = lib.emu_access_case(
            which, ctypes.c_void_p(data.data_ptr()), ctypes.c_void_p(out.data_ptr())
        )
        assert rc == 0, lib.emu_access_error().decode()
    finally:
        lib.eca_emu_count_forget_globals()
    found = {}
    for line in lib.eca_emu_count_report().decode().splitlines():
        _, _, space, kind, size, requests, accesses, units, ideal = line.split()
        if (space, kind, int(size)) in expected:
            assert (int(requests), int(accesses)) == (1, 32), line  # one warp, one request
            found[(space, kind, int(size))] = (int(units), int(ideal))
    assert found == expected


@pytest.fixture(scope="module")
def counting_emulation(tmp_path_factory):
    return Emulation(build_counting(tmp_path_factory.mktemp("access") / "ops.so", ["launcher.cpp"]))


def test_every_kernel_is_counted(counting_emulation):
    """Every __global__ function runs under the counter (as test_cuda_emulated.py's
    test_every_cuda_kernel_is_emulated launches them), and each of its access sites costs at
    least the ideal, in sectors or wavefronts."""
    emulation = counting_emulation
    emulation.access_sites()  # start afresh
    for dtype in (torch.float32, torch.bfloat16):
        for shape, channels_last in [
            ((2, 16, 5, 5), False),
            ((2, 16, 5, 5), True),
            ((1, 3, 1, 1), False),
            ((2, 2100, 1, 1), False),  # two chunks of the weight gradient
        ]:
            x, weight, grad_y = make_inputs(shape, 3, dtype, "cpu", "contiguous")
            for budget in (0, 1 << 16):  # the multi-launch plans, the single-pass kernels
                _, pooled, gate = emulation.tail_forward(
                    x, weight, None, 1.0, None, "none", "zeros", channels_last, tile_budget=budget
                )
                emulation.backward(
                    grad_y, x, weight, pooled, gate, "zeros", channels_last, tile_budget=budget
                )
            emulation.backward(grad_y, x, weight, pooled, gate, "zeros", channels_last, relu_out=x)
    sites = emulation.access_sites()
    source = "\n".join(p.read_text() for p in sorted((CSRC / "cuda").glob("*.cu*")))
    kernels = set(
        re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)", source)
    )
    assert len(kernels) == 12 and {s.kernel for s in sites} == kernels
    for s in sites:
        assert s.requests >= 1 and s.units >= s.ideal >= 1, s
        assert s.space in ("global", "shared") and s.where != "?", s


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_emulation_libraries_keep_their_own_state(cases_library, counting_emulation, tmp_path):
    """No emulation library exports a GNU unique symbol (GCC's kind for function-local statics,
    merged by the dynamic linker across every library a process loads, RTLD_LOCAL or not):
    with one, a plain launcher and a counting one loaded by the same test run shared the
    emulator's launch state, and the process exited with status 0 in the middle of a test."""
    plain = build(tmp_path / "launcher.so", ["launcher.cpp"], shared=True)
    for path in (plain, cases_library._name, counting_emulation.lib._name):
        symbols = subprocess.run(
            ["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True
        ).stdout
        unique = [line for line in symbols.splitlines() if line.split()[1:2] == ["u"]]
        assert not unique, f"{path}: {len(unique)} unique symbols, e.g. {unique[:3]}"
