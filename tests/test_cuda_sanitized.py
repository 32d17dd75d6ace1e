"""compute-sanitizer's four checks, on the CPU: the CUDA kernels' forward and backward
(tests/cuda_emulation/sanitize_cases.cpp) built with AddressSanitizer (memcheck: every buffer
is an exact-size allocation), with ThreadSanitizer (racecheck: threads of a block are ordered
only by barriers and shuffles), and plain, where NaN-filled shared memory shows a read of a
word nobody wrote (initcheck) and the emulation's barrier rules fail a __syncthreads that part
of a block misses (synccheck). Each check is shown to catch a bug of its kind planted in a
copy of csrc/."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from emulated_cuda import CSRC, build, compiler

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler on this machine")

SOURCES = ["launcher.cpp", "sanitize_cases.cpp"]
# Stop at the first report, with a nonzero exit; leaks are not what these runs look for.
ENV = {
    **os.environ,
    "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1",
}


def run(program):
    result = subprocess.run([str(program)], capture_output=True, text=True, env=ENV, timeout=600)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    "sanitizer",
    ["address", "thread", None],
    ids=["memcheck", "racecheck", "initcheck and synccheck"],
)
def test_kernels_are_clean(tmp_path, sanitizer):
    program = build(tmp_path / "sanitize_cases", SOURCES, sanitizer)
    rc, output = run(program)
    assert rc == 0 and "passed: 0 failure(s)" in output, output[-6000:]
    assert "ERROR: AddressSanitizer" not in output and "ThreadSanitizer" not in output


# (file under csrc/, text, its replacement, sanitizer, what the report says)
MUTATIONS = {
    "memcheck: a step past the end": (
        "cuda/eca_kernels.cuh",
        "  for_each_index(numel, [&](int64_t i) {\n    out[i] =",
        "  for_each_index(numel + 1, [&](int64_t i) {\n    out[i] =",
        "address",
        "heap-buffer-overflow",
    ),
    "racecheck: no barrier before the row sums are read": (
        "cuda/eca_reduce.cuh",
        "    totals[threadIdx.y][slot] = total;\n    __syncthreads();\n",
        "    totals[threadIdx.y][slot] = total;\n",
        "thread",
        "ThreadSanitizer: data race",
    ),
    "racecheck: the tile and its sums read before the barrier that ends their pass": (
        "cuda/eca_tile.cuh",
        "store(j, channel, acc_t(v));\n    }\n    __syncthreads();\n",
        "store(j, channel, acc_t(v));\n    }\n",
        "thread",
        "ThreadSanitizer: data race",
    ),
    "racecheck: no barrier between two steps of block_sum": (
        "cuda/eca_kernels.cuh",
        "    if (t < w) partial[t] += partial[t + w];\n    __syncthreads();\n",
        "    if (t < w) partial[t] += partial[t + w];\n",
        "thread",
        "ThreadSanitizer: data race",
    ),
    "initcheck: a shared word left unwritten": (
        "cuda/eca_reduce.cuh",
        "    partial[ty][threadIdx.x] = total[0];",
        "    if (ty != 3) partial[ty][threadIdx.x] = total[0];",
        None,
        "an output is not finite",
    ),
    "synccheck: a barrier in a branch": (
        "cuda/eca_reduce.cuh",
        "    __syncthreads();  // totals is rewritten",
        "    if (slot < 32) __syncthreads();  // totals is rewritten",
        None,
        "__syncthreads at",
    ),
    "synccheck: a shuffle's mask leaves out lanes that call it": (
        "cuda/eca_kernels.cuh",
        "v += __shfl_down_sync(0xffffffffu, v, w);",
        "v += __shfl_down_sync(0x0000ffffu, v, w);",
        None,
        "is not in the warp intrinsic's mask",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_check_catches_a_planted_bug(tmp_path, mutation):
    path, text, replacement, sanitizer, report = MUTATIONS[mutation]
    csrc = tmp_path / "csrc"
    shutil.copytree(CSRC, csrc)
    source = (csrc / path).read_text()
    assert source.count(text) == 1, f"{path} no longer has the text this mutation changes"
    (csrc / path).write_text(source.replace(text, replacement))
    program = build(
        tmp_path / "sanitize_cases", SOURCES, sanitizer, csrc=csrc, defines=["ECA_EMU_FLOAT32_ONLY"]
    )
    rc, output = run(program)
    assert rc != 0 and report in output, output[-6000:]
