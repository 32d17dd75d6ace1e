"""Which torch the package runs with: importing it under a torch older than the floor, or under
another release than the one it was built against, raises an ImportError that names both
versions and the command to rebuild, before the compiled library is loaded (loaded under
another torch's C++ ABI it fails with an undefined symbol, or worse, loads). Faked here by
replacing the build record, or torch's version, in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eca_cuda
from eca_cuda import _build_record, compatibility

ROOT = Path(__file__).resolve().parent.parent


def import_with(setup: str) -> subprocess.CompletedProcess:
    """Runs `setup` then `import eca_cuda` in a fresh process; prints whether the compiled
    library got loaded."""
    code = (
        f"import sys, types, torch\n{setup}\n"
        "try:\n"
        "    import eca_cuda\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
        "print('library loaded:', 'eca_cuda._C' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def fake_record(torch_version: str, cuda_version: str | None) -> str:
    return (
        "record = types.ModuleType('eca_cuda._build_record')\n"
        f"record.version = '0.1.0+fake'\nrecord.torch_version = {torch_version!r}\n"
        f"record.cuda_version = {cuda_version!r}\n"
        "sys.modules['eca_cuda._build_record'] = record"
    )


def test_the_real_record_imports():
    run = import_with("")
    assert run.returncode == 0 and "library loaded: True" in run.stdout, run.stderr[-3000:]


def test_the_record_is_what_the_library_was_built_against():
    assert torch.ops.eca_cuda.built_torch_version() == compatibility.public_version(
        _build_record.torch_version
    )
    assert (_build_record.cuda_version is not None) == eca_cuda.has_cuda_kernels()
    assert eca_cuda.__version__ == _build_record.version
    built_cuda = _build_record.cuda_version
    assert eca_cuda.__version__.endswith(
        "+" + compatibility.local_label(_build_record.torch_version, built_cuda)
    )


def test_another_torch_release_is_refused_before_the_library_loads():
    built = "2.4.1+cu121" if not torch.__version__.startswith("2.4.1") else "2.13.0+cu130"
    run = import_with(fake_record(built, None))
    message = run.stdout
    assert "ImportError: eca_cuda was built against torch " + built in message, message
    assert f"but torch {torch.__version__} is installed" in message
    assert "pip install --no-build-isolation --no-deps --force-reinstall ." in message
    assert "library loaded: False" in message


def test_a_torch_older_than_the_floor_is_refused():
    run = import_with("torch.__version__ = '2.3.1'")
    message = run.stdout
    assert f"eca_cuda needs torch >= {compatibility.MIN_TORCH}, but torch 2.3.1" in message
    assert "pip install --no-build-isolation --no-deps --force-reinstall ." in message
    assert "library loaded: False" in message


def test_cuda_kernels_need_their_cuda_major_version():
    fake = fake_record(torch.__version__, "99.0")
    message = import_with(fake).stdout
    assert "CUDA kernels were built against torch" in message and "CUDA 99.0" in message
    assert "library loaded: False" in message
    # A CPU-only build of the same release loads under any build of it.
    run = import_with(fake_record(torch.__version__, None))
    assert "library loaded: True" in run.stdout, run.stdout + run.stderr[-3000:]


@pytest.mark.parametrize(
    "installed, cuda, built, built_cuda, refused",
    [
        ("2.14.1+cu130", "13.0", "2.14.1+cu130", "13.0", None),
        ("2.14.1+cu132", "13.2", "2.14.1+cu130", "13.0", None),  # minor CUDA compatibility
        ("2.14.1+cpu", None, "2.14.1+cu130", None, None),  # a CPU-only build of the release
        ("2.14.1", "13.0", "2.15.0", "13.0", "built against torch 2.15.0"),
        ("2.14.0", "13.0", "2.14.1", "13.0", "built against torch 2.14.1"),
        ("2.14.1+cpu", None, "2.14.1+cu130", "13.0", "has no CUDA"),
        ("2.14.1+cu126", "12.6", "2.14.1+cu130", "13.0", "has CUDA 12.6"),
        ("2.3.1", None, "2.3.1", None, "needs torch >= 2.4"),
        ("1.13.1", None, "2.4.1", None, "needs torch >= 2.4"),
        ("2.15.0a0+git1234", "13.0", "2.15.0a0+git1234", "13.0", None),
    ],
)
def test_check_torch(installed, cuda, built, built_cuda, refused):
    if refused is None:
        compatibility.check_torch(installed, cuda, built, built_cuda)
    else:
        with pytest.raises(ImportError, match=re.escape(refused)):
            compatibility.check_torch(installed, cuda, built, built_cuda)


def test_local_label():
    assert compatibility.local_label("2.14.1+cu130", "13.0") == "torch2.14.1.cu130"
    assert compatibility.local_label("2.4.1+cu121", None) == "torch2.4.1.cpu"


def test_the_floor_is_the_same_everywhere():
    """MIN_TORCH, pyproject.toml's build requirement and the Makefile's say one version."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not run from a source tree (an installed wheel's test)")
    with open(ROOT / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    assert f"torch>={compatibility.MIN_TORCH}" in requires
    makefile = (ROOT / "Makefile").read_text()
    assert f'"torch>={compatibility.MIN_TORCH}"' in makefile


def test_onnx_translation_table_refuses_a_torch_without_it(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(RuntimeError, match=r"needs torch >= 2\.7 .* found torch 2\.5\.1"):
        eca_cuda.onnx_translation_table()
