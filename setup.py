"""Build eca_cuda: CPU kernels always, CUDA kernels when torch is a CUDA build and nvcc exists.

Switches (environment variables, read once here):
  ECA_CUDA_WITH_CUDA      "auto" (default): build the CUDA kernels when possible;
                          "1": require them (fail if torch or nvcc cannot build them);
                          "0": CPU kernels only.
  TORCH_CUDA_ARCH_LIST    GPU targets, default "8.0;9.0+PTX" (A100 / RTX 30 and 40 series via
                          sm_80 binaries, H100/H200 sm_90, PTX for newer GPUs to JIT).
  ECA_CUDA_DEBUG          "1": -O0 -g (and -G for device code).
  ECA_CUDA_NVCC_FLAGS     extra nvcc flags, space separated (e.g. "-Xptxas=-v").
  MAX_JOBS                parallel compile jobs (read by torch's ninja build).
  CUDA_HOME               the CUDA toolkit; when unset, found from the nvcc on PATH.

Use `pip install --no-build-isolation -e .` so the build sees the torch you already have.
The package's metadata (version, dependencies, extras) is in pyproject.toml; this file adds
the extension.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def log(message):
    print(f"[eca_cuda setup] {message}", flush=True)


def is_toolkit(path):
    return (
        bool(path)
        and os.path.isfile(os.path.join(path, "bin", "nvcc"))
        and (
            glob.glob(os.path.join(path, "lib64", "libcudart.so*"))
            or glob.glob(os.path.join(path, "lib", "libcudart.so*"))
        )
    )


def find_cuda_home():
    """The CUDA toolkit folder, or None.

    The `nvcc` first on PATH can be a wrapper script outside the toolkit, which makes
    torch guess CUDA_HOME wrong and fail at link time (no libcudart there), so ask nvcc
    where it really lives (its dry run prints `_HERE_=<toolkit>/bin`).
    """
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        try:
            dry = subprocess.run(
                [nvcc, "-dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                capture_output=True,
                text=True,
                timeout=60,
            )
            match = re.search(r"_HERE_=(\S+)", dry.stdout + dry.stderr)
            if match:
                candidates.append(os.path.dirname(os.path.realpath(match.group(1))))
        except (OSError, subprocess.SubprocessError):
            pass
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    return next((c for c in candidates if is_toolkit(c)), None)


WITH_CUDA_SWITCH = os.environ.get("ECA_CUDA_WITH_CUDA", "auto").strip().lower()
if WITH_CUDA_SWITCH not in {"auto", "0", "1"}:
    raise SystemExit(f"ECA_CUDA_WITH_CUDA must be auto, 0 or 1, got {WITH_CUDA_SWITCH!r}")
DEBUG = os.environ.get("ECA_CUDA_DEBUG", "0") == "1"
EXTRA_NVCC_FLAGS = os.environ.get("ECA_CUDA_NVCC_FLAGS", "").split()

# torch.utils.cpp_extension reads CUDA_HOME when imported: settle it first.
if WITH_CUDA_SWITCH != "0" and not is_toolkit(os.environ.get("CUDA_HOME")):
    found = find_cuda_home()
    if found:
        os.environ["CUDA_HOME"] = found

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

cuda_possible = torch.version.cuda is not None and is_toolkit(CUDA_HOME)
if WITH_CUDA_SWITCH == "1" and not cuda_possible:
    raise SystemExit(
        "[eca_cuda setup] ECA_CUDA_WITH_CUDA=1 but the CUDA kernels cannot be built: "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}. "
        "Install a CUDA build of torch and the CUDA toolkit (nvcc), or set CUDA_HOME."
    )
WITH_CUDA = cuda_possible and WITH_CUDA_SWITCH != "0"


def source_files(*pattern):
    """Files matching csrc/<pattern>, relative to this folder: setuptools refuses absolute
    source paths once the metadata lives in pyproject.toml (pip runs setup.py from here)."""
    found = glob.glob(os.path.join(ROOT, "csrc", *pattern))
    return sorted(os.path.relpath(path, ROOT) for path in found)


sources = source_files("*.cpp") + source_files("cpu", "*.cpp")
cxx_flags = ["-O0", "-g"] if DEBUG else ["-O3"]
# at::parallel_for is a header template over `#pragma omp parallel` when torch uses OpenMP:
# without -fopenmp here the CPU kernels would silently run on one thread.
OPENMP = torch.backends.openmp.is_available() and sys.platform != "darwin"
openmp_flags = ["-fopenmp"] if OPENMP else []
cxx_flags += openmp_flags
# No a * b + c contracted into an FMA behind our back: the contiguous and channels_last
# kernels must round the same scalar expressions the same way to give the same bits.
cxx_flags += ["-ffp-contract=off"]
define_macros = []
extra_compile_args = {"cxx": cxx_flags}

log(f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}")
if WITH_CUDA:
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    sources += source_files("cuda", "*.cu")
    define_macros.append(("ECA_WITH_CUDA", None))
    nvcc_flags = ["-O0", "-g", "-G"] if DEBUG else ["-O3", "-lineinfo"]
    extra_compile_args["nvcc"] = nvcc_flags + EXTRA_NVCC_FLAGS
    extension_class = CUDAExtension
    log(
        f"building CPU and CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}"
    )
else:
    extension_class = CppExtension
    reason = "ECA_CUDA_WITH_CUDA=0" if WITH_CUDA_SWITCH == "0" else "no CUDA torch or no nvcc"
    log(f"building CPU kernels only ({reason})")
log(f"OpenMP={OPENMP}, debug={DEBUG}, MAX_JOBS={os.environ.get('MAX_JOBS', 'torch default')}")

setup(
    ext_modules=[
        extension_class(
            name="eca_cuda._C",
            sources=sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=openmp_flags,
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
