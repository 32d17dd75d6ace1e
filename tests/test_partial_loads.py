"""No lane past a partial vector load's count reaches a result, on any torch.

at::vec's ``Vectorized<T>::loadu(ptr, count)`` promises the first ``count`` lanes only: torch
2.4-2.6's AVX2 bfloat16 and float16 loads left the others uninitialised, and the CPU kernels'
sums added them in (NaN or O(1) errors wherever a row length was not a multiple of 16). The CPU
kernels now call it only inside ``csrc/cpu/vec_io.h``: ``loadu_partial`` (lanes past ``n``
unspecified, for lane-wise work) and ``loadu_zero_padded`` (zeros there, wherever lanes are
added together). Built with ``ECA_CPU_POISON_PARTIAL_LOADS``, ``loadu_partial`` fills those
lanes with NaN, the worst the contract allows, whatever torch does; the operator, tail and
layout tests then run against that build at every instruction set this CPU runs. The same run
with the build's padding switched off (the kernels as they were) fails: the check catches the
bug it exists for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import eca_cuda

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CSRC = ROOT / "csrc"
# The tests run against the poisoned build: CPU cases only (the build has no CUDA kernels).
SUITE = ["test_ops.py", "test_tail.py", "test_layouts.py", "test_autograd.py"]
ORDER = ["DEFAULT", "AVX2", "AVX512", "AVX512_BF16"]
PINS = {"DEFAULT": "default", "AVX2": "avx2", "AVX512": "avx512", "AVX512_BF16": None}


def call_arguments(text: str, start: int) -> list[str]:
    """The top-level, comma-separated arguments of the call whose '(' is at text[start]."""
    depth, args, current = 0, [], ""
    for ch in text[start:]:
        if ch in "([{":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return args + ([current] if current.strip() else [])
        if ch == "," and depth == 1:
            args.append(current)
            current = ""
        else:
            current += ch
    raise ValueError("unbalanced call")


def test_only_vec_io_calls_a_partial_loadu():
    """Every two-argument loadu of csrc/cpu/ is the one in vec_io.h's loadu_partial."""
    found = []
    for path in sorted((CSRC / "cpu").iterdir()):
        text = re.sub(r"//[^\n]*", "", path.read_text())  # comments name the call too
        for match in re.finditer(r"\bloadu\s*\(", text):
            if len(call_arguments(text, match.end() - 1)) >= 2:
                found.append((path.name, match.start(), text))
    assert len(found) == 1, [(name, text.count("\n", 0, at) + 1) for name, at, text in found]
    name, at, text = found[0]
    start = text.index("loadu_partial(const T* p, int64_t n) {")
    assert name == "vec_io.h" and start < at < text.index("\n}\n", start)


def capabilities() -> list[str]:
    """The CPU builds this machine runs, lowest first."""
    return ORDER[: ORDER.index(eca_cuda.cpu_capability()) + 1]


def build_poisoned_library(csrc: Path, build_dir: Path) -> Path:
    """The CPU kernels and operators of ``csrc`` (no CUDA) with partial loads poisoned, built
    by torch.utils.cpp_extension in a subprocess (building loads the library, which must not
    meet the installed one in this process). Rebuilt only when a source changed; -O1, which
    compiles faster and computes the same (no FMA contraction either way)."""
    sources = sorted(str(p) for p in [*csrc.glob("*.cpp"), *(csrc / "cpu").glob("*.cpp")])
    build_dir.mkdir(parents=True, exist_ok=True)
    flags = ["-O1", "-fopenmp", "-ffp-contract=off", "-DECA_CPU_POISON_PARTIAL_LOADS"]
    code = (
        "import sys, torch.utils.cpp_extension as e\n"
        f"e.load(name='_C', sources={sources!r}, extra_cflags={flags!r}, "
        f"extra_ldflags=['-fopenmp'], extra_include_paths=[{str(csrc)!r}], "
        f"build_directory={str(build_dir)!r}, is_python_module=False)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return build_dir / "_C.so"


# Imports `library` as eca_cuda._C before eca_cuda is imported, sets its padding on or off,
# then runs pytest.
RUNNER = """
import importlib.machinery, importlib.util, sys
import torch  # its libraries first: the extension links against them
path, padding = sys.argv[1], sys.argv[2] == "padded"
loader = importlib.machinery.ExtensionFileLoader("eca_cuda._C", path)
spec = importlib.util.spec_from_file_location("eca_cuda._C", path, loader=loader)
module = importlib.util.module_from_spec(spec)
loader.exec_module(module)
sys.modules["eca_cuda._C"] = module
import pytest, torch, eca_cuda
assert torch.ops.eca_cuda.partial_loads_poisoned(), "not the poisoned build"
torch.ops.eca_cuda.set_partial_load_padding(padding)
print("capability", eca_cuda.cpu_capability(), flush=True)
sys.exit(pytest.main(sys.argv[3:]))
"""


def run_suite(library: Path, capability: str, padding: str, *pytest_args: str):
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if PINS[capability]:
        env["ATEN_CPU_CAPABILITY"] = PINS[capability]
    args = ["-q", "-p", "no:cacheprovider", "-m", "not needs_cuda", *pytest_args]
    args += [str(TESTS / name) for name in SUITE]
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(library), padding, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def poisoned_library() -> Path:
    return build_poisoned_library(CSRC, ROOT / "build" / "poisoned-cpu")


@pytest.mark.slow
@pytest.mark.parametrize("capability", ORDER)
def test_poisoned_lanes_reach_no_result(poisoned_library, capability):
    if capability not in capabilities():
        pytest.skip(f"this CPU runs {eca_cuda.cpu_capability()}")
    run = run_suite(poisoned_library, capability, "padded")
    output = run.stdout + run.stderr
    assert f"capability {capability}\n" in output, output[-3000:]
    assert run.returncode == 0, output[-6000:]


@pytest.mark.slow
def test_poison_catches_a_sum_over_unpadded_lanes(poisoned_library):
    """The bug torch 2.4-2.6 exposed: a partial step's lanes past n added into a sum. With the
    poisoned build's padding off, results are wrong at once, at the best CPU build."""
    run = run_suite(poisoned_library, eca_cuda.cpu_capability(), "unpadded", "-x")
    output = run.stdout + run.stderr
    assert run.returncode == 1 and "AssertionError" in output, output[-6000:]
