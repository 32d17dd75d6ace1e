"""What nvcc made of the CUDA kernels, read from the installed library with cuobjdump, no GPU
needed: no kernel spills registers or keeps a stack frame, on any architecture built, and the
packed rescale kernels and the single-pass forward and backward move data in 128-bit global
loads and stores. The build log has ptxas' own report of each kernel (setup.py passes
-Xptxas=-v)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import eca_cuda
from eca_cuda import _C

pytestmark = pytest.mark.skipif(
    not eca_cuda.has_cuda_kernels(), reason="eca_cuda was built without its CUDA kernels"
)


def cuobjdump() -> str:
    """The toolkit's cuobjdump, or the one Triton's package carries (torch depends on it)."""
    candidates = [shutil.which("cuobjdump")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    try:
        import triton

        candidates.append(str(Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"))
    except ImportError:
        pass
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if found is None:
        pytest.fail("no cuobjdump (CUDA toolkit or Triton) to read the CUDA kernels with")
    return found


def dump(*flags) -> str:
    result = subprocess.run(
        [cuobjdump(), *flags, _C.__file__], capture_output=True, text=True, check=True
    )
    return result.stdout


def demangle(names):
    filt = shutil.which("c++filt")
    if filt is None:
        return list(names)
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True)
    return out.stdout.splitlines()


def sass_of(kernel: str) -> list[str]:
    """The SASS of every instantiation of ``kernel`` on every arch, one string each."""
    functions = re.split(r"\n\s*Function : ", dump("-sass"))[1:]
    return [f for f in functions if kernel in f.split("\n", 1)[0]]


@pytest.fixture(scope="module")
def resources():
    """(arch, kernel, {REG: .., STACK: .., LOCAL: .., ...}) of every kernel of every arch."""
    found, arch = [], None
    text = dump("-res-usage")
    mangled = re.findall(r"Function (\S+):", text)
    names = dict(zip(mangled, demangle(mangled)))
    lines = iter(text.splitlines())
    for line in lines:
        if m := re.match(r"arch = (sm_\d+a?)", line.strip()):
            arch = m.group(1)
        elif m := re.match(r"\s*Function (\S+):", line):
            usage = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", next(lines)))
            found.append((arch, names[m.group(1)], {k: int(v) for k, v in usage.items()}))
    return found


def test_every_kernel_of_every_arch_is_there(resources):
    archs = set(eca_cuda.cuda_archs())
    kernels = {re.sub(r"<.*", "", name) for _, name, _ in resources}
    assert {arch for arch, _, _ in resources} == archs
    assert len(kernels) == 12, kernels
    # Per arch: the 5 (N, C) kernels for 2 accumulation dtypes, the 4 spatial ones (2
    # reductions with and without a product, 2 rescales for 2 layouts) for 4 dtypes, the
    # single-pass forward and backward for 2 layouts and 4 dtypes, and the ReLU mask for 4.
    assert len(resources) == len(archs) * (5 * 2 + 4 * 2 * 4 + 2 * 2 * 4 + 4)


def test_no_kernel_spills(resources):
    """Register spills land in the stack frame (local memory): none in any kernel."""
    spilling = [(arch, name, u) for arch, name, u in resources if u["STACK"] or u["LOCAL"]]
    assert not spilling, spilling


def test_tile_kernels_fit_two_blocks_per_sm(resources):
    """The occupancy the single-pass plan is sized for (docs/cuda-kernels.md): two blocks of
    256 threads per SM, which shared memory allows (two 100 KiB tiles) and registers must too:
    at most 65536 / 512 = 128 registers a thread, on every architecture."""
    tiles = [(arch, name, u) for arch, name, u in resources if "tile_" in name]
    assert len(tiles) == len(eca_cuda.cuda_archs()) * 16
    heavy = [(arch, name, u["REG"]) for arch, name, u in tiles if u["REG"] > 128]
    assert not heavy, heavy


def test_packed_rescale_moves_128_bits(resources):
    packed = sass_of("scale_shift_packed_kernel")
    assert len(packed) == len(eca_cuda.cuda_archs()) * 8
    for body in packed:
        name = demangle([body.split("\n", 1)[0].strip()])[0]
        assert re.search(r"LDG\.E\.128", body), f"{name}: no 128-bit global load"
        assert re.search(r"STG\.E\.128", body), f"{name}: no 128-bit global store"


@pytest.mark.parametrize("kernel", ["tile_forward_kernel", "tile_backward_kernel"])
def test_single_pass_kernels_read_once_and_store_128_bits(resources, kernel):
    """The tile kernels read the window in element loads that allocate no L1 lines (.NA:
    ld.global.L1::no_allocate; a thread sums one slot of a channel, docs/cuda-kernels.md), and
    rescale the tile from shared memory in 16-byte packs to 16-byte no-allocate stores."""
    tiles = sass_of(kernel)
    assert len(tiles) == len(eca_cuda.cuda_archs()) * 8
    for body in tiles:
        name = demangle([body.split("\n", 1)[0].strip()])[0]
        assert re.search(r"LDG\.E\.NA(\.U16|\.64)?(\.SYS)?\s", body), (
            f"{name}: no no-allocate element load"
        )
        assert re.search(r"STG\.E\.NA\.128", body), f"{name}: no 128-bit no-allocate store"
        assert re.search(r"LDS(\.U)?\.128", body), f"{name}: no 128-bit shared load"
