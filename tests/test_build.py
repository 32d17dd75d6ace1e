"""Build info, packaging, and that the CUDA kernels are compiled in and registered where they
should be."""

import importlib.metadata
import os
import shlex
from pathlib import Path

import pytest
import torch

import eca_cuda

ROOT = Path(__file__).resolve().parent.parent


def test_one_version():
    """pyproject.toml takes the version from eca_cuda.__version__, the one place it is written."""
    assert importlib.metadata.version("eca_cuda") == eca_cuda.__version__


def test_makefile_installs_the_build_requirements_of_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    with open(ROOT / "Makefile") as f:
        line = next(line for line in f if line.startswith("BUILD_REQUIRES :="))
    assert sorted(shlex.split(line.split(":=", 1)[1])) == sorted(requires)


def test_build_info_is_consistent():
    archs = eca_cuda.cuda_archs()
    assert eca_cuda.has_cuda_kernels() == bool(archs)
    assert all(arch.startswith("sm_") for arch in archs)
    for op in ("eca_forward", "eca_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"eca_cuda::{op}", "CPU")
        has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(f"eca_cuda::{op}", "CUDA")
        assert has_cuda == bool(archs)


@pytest.mark.skipif(
    os.environ.get("ECA_CUDA_WITH_CUDA") != "1",
    reason="only where the build was told to require CUDA",
)
def test_cuda_kernels_were_built_for_requested_archs():
    """CI builds with ECA_CUDA_WITH_CUDA=1: the CUDA kernels must have compiled and linked."""
    archs = eca_cuda.cuda_archs()
    requested = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    for arch in requested.replace(" ", ";").split(";"):
        assert f"sm_{arch.split('+')[0].replace('.', '')}" in archs


@pytest.mark.needs_cuda
def test_kernels_run_on_gpu():
    x = torch.randn(2, 8, 4, 4, device="cuda")
    y = eca_cuda.eca(x, torch.randn(3, device="cuda"))
    assert y.is_cuda and torch.isfinite(y).all()
