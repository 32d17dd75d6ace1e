"""Build eca_cuda: CPU kernels always, CUDA kernels when torch is a CUDA build and nvcc exists.

Switches (environment variables, read once here):
  ECA_CUDA_WITH_CUDA      "auto" (default): build the CUDA kernels when possible;
                          "1": require them (fail if torch or nvcc cannot build them);
                          "0": CPU kernels only.
  TORCH_CUDA_ARCH_LIST    GPU targets (e.g. "8.6" or "7.5;9.0+PTX"). Unset: the visible GPUs'
                          architectures when there are GPUs (torch's own rule); without
                          one, binaries for the common architectures that torch and nvcc
                          both support and PTX of the highest, for newer GPUs (cuda_arch_list).
  ECA_CUDA_PORTABLE       "1": the no-GPU list above even where GPUs are visible (`make wheel`).
  ECA_CUDA_DEBUG          "1": -O0 -g (and -G for device code).
  ECA_CUDA_NVCC_FLAGS     extra nvcc flags, space separated (e.g. "-Xptxas=-v").
  MAX_JOBS                parallel compile jobs (read by torch's ninja build).
  CUDA_HOME               the CUDA toolkit; when unset, found from the nvcc on PATH.

Use `pip install --no-build-isolation -e .` so the build sees the torch you already have.
The package's static metadata (extras, tools) is in pyproject.toml; this file adds the
extension, and the metadata that depends on the torch it is built against: the version's local
label (eca_cuda/compatibility.py) and the dependency on that torch release, which
eca_cuda/_build_record.py records for the check at import.
"""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# The package's version; a build appends the torch (and CUDA) it was built against as a local
# label, e.g. 0.1.0+torch2.14.1.cu130.
VERSION = "0.1.0"
# Built as binaries when no GPU is visible: Turing (T4), Ampere (A100, RTX 30), Ada (RTX 40,
# L4), Hopper (H100, H200), Blackwell (B200, RTX 50); PTX of the highest covers newer GPUs.
COMMON_ARCHS = ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")


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


def sm_numbers(names):
    """(major, minor) of each "sm_XY" / "compute_XY" name, e.g. "sm_120" -> (12, 0)."""
    found = set()
    for name in names:
        match = re.fullmatch(r"(?:sm|compute)_(\d+)(\d)[a-z]?", name)
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
    return found


def cuda_arch_list(requested, visible, torch_archs, nvcc_archs):
    """(TORCH_CUDA_ARCH_LIST to build with, or None to let torch pick, and why).

    requested: the environment's TORCH_CUDA_ARCH_LIST ("" when unset); visible: how many GPUs
    torch sees (0 for a portable build); torch_archs: torch.cuda.get_arch_list() (["sm_75",
    ...]); nvcc_archs: what `nvcc --list-gpu-arch` prints (["compute_75", ...]), or None when
    it cannot be asked.

    PTX goes with the highest architecture, as torch's own builds do: a GPU newer than the list
    JIT-compiles it with every instruction the list's newest GPU has, where PTX of the lowest
    would give up those of every later generation.
    """
    if requested:
        return requested, "TORCH_CUDA_ARCH_LIST"
    if visible:
        return None, "the visible GPUs' architectures (torch's detection)"
    supported = sm_numbers(torch_archs)
    if nvcc_archs is not None:
        supported &= sm_numbers(nvcc_archs)
    if not supported:
        raise SystemExit(
            "[eca_cuda setup] no GPU visible and no architecture both torch "
            f"({torch_archs}) and nvcc ({nvcc_archs}) support: set TORCH_CUDA_ARCH_LIST"
        )
    common = {a for a in supported if f"{a[0]}.{a[1]}" in COMMON_ARCHS}
    # A binary runs only on its own major version, so every supported architecture below the
    # common ones (e.g. 6.0, 7.0 with torch for CUDA 12) gets one of its own.
    lowest_common = min(common, default=max(supported))
    chosen = sorted(common | {a for a in supported if a <= lowest_common})
    names = [f"{a[0]}.{a[1]}" + ("+PTX" if a == chosen[-1] else "") for a in chosen]
    return ";".join(names), "common architectures, PTX of the highest"


def nvcc_gpu_archs(cuda_home):
    """`nvcc --list-gpu-arch` as a list, or None when nvcc cannot say."""
    try:
        listed = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-arch"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return listed.stdout.split() if listed.returncode == 0 else None


def source_files(*pattern):
    """Files matching csrc/<pattern>, relative to this folder: setuptools refuses absolute
    source paths once the metadata lives in pyproject.toml (pip runs setup.py from here)."""
    found = glob.glob(os.path.join(ROOT, "csrc", *pattern))
    return sorted(os.path.relpath(path, ROOT) for path in found)


def load_compatibility():
    """eca_cuda/compatibility.py as a module (importing the package would load its library)."""
    path = os.path.join(ROOT, "eca_cuda", "compatibility.py")
    spec = importlib.util.spec_from_file_location("eca_cuda_compatibility", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_build_record(version, torch_version, cuda_version):
    """eca_cuda/_build_record.py: what this build is and was built against, read at import.
    Rewritten only when it changes, so an unchanged rebuild leaves it as it was."""
    path = os.path.join(ROOT, "eca_cuda", "_build_record.py")
    text = (
        '"""What eca_cuda was built against: written by setup.py (not in git), checked at '
        'import."""\n\n'
        f"version = {version!r}\n"
        f"torch_version = {torch_version!r}  # torch.__version__ at build time\n"
        f"cuda_version = {cuda_version!r}  # torch.version.cuda of the CUDA kernels; None: none\n"
    )
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
        with open(path, "w") as f:
            f.write(text)


def main():
    with_cuda_switch = os.environ.get("ECA_CUDA_WITH_CUDA", "auto").strip().lower()
    if with_cuda_switch not in {"auto", "0", "1"}:
        raise SystemExit(f"ECA_CUDA_WITH_CUDA must be auto, 0 or 1, got {with_cuda_switch!r}")
    debug = os.environ.get("ECA_CUDA_DEBUG", "0") == "1"
    extra_nvcc_flags = os.environ.get("ECA_CUDA_NVCC_FLAGS", "").split()

    # torch.utils.cpp_extension reads CUDA_HOME when imported: settle it first.
    if with_cuda_switch != "0" and not is_toolkit(os.environ.get("CUDA_HOME")):
        found = find_cuda_home()
        if found:
            os.environ["CUDA_HOME"] = found

    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    compatibility = load_compatibility()
    if compatibility.release(torch.__version__) < compatibility.release(compatibility.MIN_TORCH):
        raise SystemExit(
            f"[eca_cuda setup] eca_cuda needs torch >= {compatibility.MIN_TORCH}, found torch "
            f"{torch.__version__}: install a newer torch first"
        )

    cuda_possible = torch.version.cuda is not None and is_toolkit(CUDA_HOME)
    if with_cuda_switch == "1" and not cuda_possible:
        raise SystemExit(
            "[eca_cuda setup] ECA_CUDA_WITH_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}. "
            "Install a CUDA build of torch and the CUDA toolkit (nvcc), or set CUDA_HOME."
        )
    with_cuda = cuda_possible and with_cuda_switch != "0"

    sources = source_files("*.cpp") + source_files("cpu", "*.cpp")
    cxx_flags = ["-O0", "-g"] if debug else ["-O3"]
    # at::parallel_for is a header template over `#pragma omp parallel` when torch uses
    # OpenMP: without -fopenmp here the CPU kernels would silently run on one thread.
    openmp = torch.backends.openmp.is_available() and sys.platform != "darwin"
    openmp_flags = ["-fopenmp"] if openmp else []
    cxx_flags += openmp_flags
    # No a * b + c contracted into an FMA behind our back: the contiguous and channels_last
    # kernels must round the same scalar expressions the same way to give the same bits.
    cxx_flags += ["-ffp-contract=off"]
    define_macros = []
    extra_compile_args = {"cxx": cxx_flags}

    log(f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}")
    if with_cuda:
        portable = os.environ.get("ECA_CUDA_PORTABLE", "0") == "1"
        arch_list, why = cuda_arch_list(
            os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip(),
            0 if portable else torch.cuda.device_count(),
            torch.cuda.get_arch_list(),
            nvcc_gpu_archs(CUDA_HOME),
        )
        if arch_list:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
        sources += source_files("cuda", "*.cu") + source_files("cuda", "*.cpp")
        define_macros.append(("ECA_WITH_CUDA", None))
        nvcc_flags = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
        # --fmad=false: no a * b + c contracted into an FMA either, so that the GPU rounds as
        # the host emulation of the kernels (tests/cuda_emulation/) does; the kernels' FMAs are
        # written out. -Xptxas=-v: registers, stack and spills of every kernel in the build log.
        # --threads=0: the architectures compile in parallel, one thread per core (56 s -> 33 s
        # for six on two cores, docs/packaging.md).
        nvcc_flags += ["--fmad=false", "-Xptxas=-v", "--threads=0"]
        extra_compile_args["nvcc"] = nvcc_flags + extra_nvcc_flags
        extension_class = CUDAExtension
        log(f"building CPU and CUDA kernels for {arch_list or 'the visible GPUs'} ({why})")
    else:
        extension_class = CppExtension
        reason = "ECA_CUDA_WITH_CUDA=0" if with_cuda_switch == "0" else "no CUDA torch or no nvcc"
        log(f"building CPU kernels only ({reason})")
    jobs = os.environ.get("MAX_JOBS", "torch default")
    log(f"OpenMP={openmp}, debug={debug}, MAX_JOBS={jobs}")

    built_cuda = torch.version.cuda if with_cuda else None
    version = f"{VERSION}+{compatibility.local_label(torch.__version__, built_cuda)}"
    write_build_record(version, torch.__version__, built_cuda)
    log(f"version {version}")

    class BuildExtensionKeepingObjects(BuildExtension.with_options(use_ninja=True)):
        """Compiles into build/temp/ rather than a fresh temporary folder per run (pip's
        editable builds), so ninja recompiles only what changed, and `make wheel` after
        `make install` reuses the editable build's objects (same commands, same objects)."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = os.path.join(ROOT, "build", "temp")

    setup(
        version=version,
        install_requires=[f"torch=={compatibility.public_version(torch.__version__)}"],
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
        cmdclass={"build_ext": BuildExtensionKeepingObjects},
    )


# pip runs this file as __main__; tests import it for cuda_arch_list.
if __name__ == "__main__":
    main()
