"""Build info, packaging, and that the CUDA kernels are compiled in and registered where they
should be."""

import importlib.metadata
import importlib.util
import os
import shlex
from pathlib import Path

import pytest
import torch

import eca_cuda

ROOT = Path(__file__).resolve().parent.parent


def test_one_version():
    """The installed metadata's version is eca_cuda.__version__: setup.py's VERSION with the
    local label of the torch it was built against, both written once, by the build."""
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


def load_setup_py():
    """setup.py as a module (its main(), the build, runs only as __main__)."""
    spec = importlib.util.spec_from_file_location("eca_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TORCH_CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
NVCC_13 = "compute_75 compute_80 compute_86 compute_87 compute_88 compute_89 compute_90".split()
NVCC_13 += "compute_100 compute_110 compute_103 compute_120 compute_121".split()
TORCH_CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
NVCC_12 = [f"compute_{a}" for a in (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90)]


@pytest.mark.parametrize(
    "requested, visible, torch_archs, nvcc_archs, expected",
    [
        pytest.param("8.6", 0, TORCH_CU130, NVCC_13, "8.6", id="the user's list, as given"),
        pytest.param("", 1, TORCH_CU130, NVCC_13, None, id="a GPU visible: torch detects it"),
        pytest.param(
            "", 0, TORCH_CU130, NVCC_13, "7.5;8.0;8.6;9.0;10.0;12.0+PTX", id="no GPU, CUDA 13"
        ),
        pytest.param(
            "",
            0,
            TORCH_CU126,
            NVCC_12,
            "5.0;6.0;7.0;7.5;8.0;8.6;9.0+PTX",
            id="no GPU, torch for CUDA 12.6: a binary for each older major",
        ),
        pytest.param(
            "", 0, TORCH_CU126, NVCC_13, "7.5;8.0;8.6;9.0+PTX", id="what this nvcc cannot build"
        ),
        pytest.param("", 0, TORCH_CU130, None, "7.5;8.0;8.6;9.0;10.0;12.0+PTX", id="nvcc silent"),
        pytest.param("", 0, ["sm_75", "sm_90", "sm_95"], None, "7.5;9.0+PTX", id="no common 9.5"),
    ],
)
def test_cuda_arch_list(requested, visible, torch_archs, nvcc_archs, expected):
    """A plain build targets every GPU that torch supports: the user's list when set, the
    visible GPUs when there are some, else binaries of the common architectures (and of any
    older one torch supports, as a binary runs only on its own major version) and PTX of the
    highest, which a newer GPU compiles at load with every instruction the list's newest
    has (torch's convention)."""
    arch_list, why = load_setup_py().cuda_arch_list(requested, visible, torch_archs, nvcc_archs)
    assert arch_list == expected and why


def test_cuda_arch_list_fails_without_a_common_architecture():
    with pytest.raises(SystemExit, match="TORCH_CUDA_ARCH_LIST"):
        load_setup_py().cuda_arch_list("", 0, ["sm_50"], ["compute_75"])


@pytest.mark.skipif(
    os.environ.get("ECA_CUDA_WITH_CUDA") != "1",
    reason="only where the build was told to require CUDA",
)
def test_cuda_kernels_were_built_for_the_chosen_archs():
    """CI builds with ECA_CUDA_WITH_CUDA=1: the CUDA kernels compiled and linked for every
    architecture setup.py chose (with this environment, this torch and this nvcc)."""
    setup_py = load_setup_py()
    cuda_home = os.environ.get("CUDA_HOME") or setup_py.find_cuda_home()
    arch_list, _ = setup_py.cuda_arch_list(
        os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip(),
        torch.cuda.device_count(),
        torch.cuda.get_arch_list(),
        setup_py.nvcc_gpu_archs(cuda_home),
    )
    if arch_list is None:
        expected = {
            "sm_{}{}".format(*torch.cuda.get_device_capability(i))
            for i in range(torch.cuda.device_count())
        }
    else:
        expected = {f"sm_{a.split('+')[0].replace('.', '')}" for a in arch_list.split(";")}
    assert expected <= set(eca_cuda.cuda_archs())


@pytest.mark.needs_cuda
def test_kernels_run_on_gpu():
    x = torch.randn(2, 8, 4, 4, device="cuda")
    y = eca_cuda.eca(x, torch.randn(3, device="cuda"))
    assert y.is_cuda and torch.isfinite(y).all()
