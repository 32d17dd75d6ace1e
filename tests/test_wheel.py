"""The binary wheel of `make wheel` installs and runs without a compiler.

`make wheel-test` builds the wheel and runs this file with ECA_CUDA_WHEEL naming it; without
that variable these tests skip. The wheel must carry the torch (and CUDA) it was built against
in its version's local label and pin that torch release; installed into a fresh virtual
environment that holds only that torch and the test tools, with nothing but the environment's
own bin/ on PATH (no gcc, c++, nvcc), it must import from that environment and pass the CPU
test files there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import eca_cuda
from eca_cuda import compatibility

TESTS = Path(__file__).resolve().parent
WHEEL = os.environ.get("ECA_CUDA_WHEEL", "")
pytestmark = pytest.mark.skipif(not WHEEL, reason="no wheel named: `make wheel-test` builds one")
# The CPU test files (no timm needed; CUDA cases skip without a GPU, torch.compile's for want
# of a compiler; test_cpu_capability.py reruns several of them at the lower CPU builds).
CPU_TESTS = [
    "test_ops.py",
    "test_autograd.py",
    "test_tail.py",
    "test_layouts.py",
    "test_errors.py",
    "test_degenerate.py",
    "test_determinism.py",
    "test_torchscript.py",
    "test_compile.py",
    "test_cpu_capability.py",
    "test_compatibility.py",
]
COMPILERS = ["cc", "gcc", "c++", "g++", "clang", "clang++", "nvcc"]


def wheel_version(path: str) -> str:
    """The version of a wheel file name (eca_cuda-<version>-<python>-<abi>-<platform>.whl)."""
    return Path(path).name.split("-")[1]


def test_wheel_is_labelled_with_this_torch():
    """The version says which torch and CUDA; the metadata pins that torch release; the wheel
    holds the compiled library and the record the import check reads."""
    built_cuda = torch.version.cuda if eca_cuda.has_cuda_kernels() else None
    label = compatibility.local_label(torch.__version__, built_cuda)
    assert wheel_version(WHEEL) == f"{eca_cuda.__version__.split('+')[0]}+{label}"
    with zipfile.ZipFile(WHEEL) as wheel:
        names = wheel.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = re.findall(r"^Requires-Dist: (.*)$", wheel.read(metadata).decode(), re.M)
    assert [r for r in requires if r.startswith("torch")] == [
        f"torch=={compatibility.public_version(torch.__version__)}"
    ]
    assert any(re.fullmatch(r"eca_cuda/_C\..*\.so", n) for n in names), names
    assert "eca_cuda/_build_record.py" in names


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new virtual environment with the wheel, its torch, pytest, hypothesis and numpy,
    installed with no compiler reachable."""
    root = tmp_path_factory.mktemp("wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PATH=str(venv / "bin"))
    for name in ("CC", "CXX", "CUDA_HOME", "PYTHONPATH"):
        env.pop(name, None)
    missing = [c for c in COMPILERS if shutil.which(c, path=env["PATH"])]
    assert not missing, f"a compiler is reachable: {missing}"
    install = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", WHEEL]
        + ["pytest", "hypothesis", "numpy"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    yield venv
    shutil.rmtree(venv)  # 5.5 GB with torch's CUDA libraries; pytest keeps 3 runs' folders


def clean_env(venv: Path) -> dict[str, str]:
    env = dict(os.environ, PATH=str(venv / "bin"))
    for name in ("CC", "CXX", "CUDA_HOME", "PYTHONPATH", "ATEN_CPU_CAPABILITY"):
        env.pop(name, None)
    return env


def test_installs_that_torch_and_imports_from_the_venv(fresh_venv):
    code = (
        "import eca_cuda, torch; "
        "print(torch.__version__); print(eca_cuda.__file__); print(eca_cuda.__version__)"
    )
    out = subprocess.run(
        [fresh_venv / "bin" / "python", "-c", code],
        env=clean_env(fresh_venv),
        cwd=fresh_venv,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    torch_version, location, version = out.stdout.split()
    assert torch_version == torch.__version__
    assert Path(location).resolve().is_relative_to(fresh_venv.resolve())
    assert version == wheel_version(WHEEL)


def test_cpu_tests_pass_in_the_venv(fresh_venv, tmp_path):
    """The CPU test files, copied out of the source tree, run against the installed wheel."""
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in CPU_TESTS + ["conftest.py", "helpers.py"]:
        shutil.copy(TESTS / name, tests / name)
    run = subprocess.run(
        [fresh_venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-m", "not needs_cuda", "tests"],
        env=clean_env(fresh_venv),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.strip().splitlines()[-1]
