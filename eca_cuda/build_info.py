"""What the installed extension was built with; ``python -m eca_cuda`` prints it."""

from __future__ import annotations

import torch

from . import _C  # noqa: F401


def cuda_archs() -> list[str]:
    """GPU targets the CUDA kernels were compiled for, e.g. ``["sm_80", "sm_90"]``.

    Read from the compiled library (nvcc's ``__CUDA_ARCH_LIST__``); empty when the
    extension was built without CUDA.
    """
    return [f"sm_{arch}" for arch in torch.ops.eca_cuda.compiled_cuda_archs()]


def has_cuda_kernels() -> bool:
    """True when the CUDA kernels were compiled into the installed extension."""
    return bool(cuda_archs())


def cpu_capability() -> str:
    """The instruction set the CPU kernels run: ``"AVX512_BF16"``, ``"AVX512"``, ``"AVX2"`` or
    ``"DEFAULT"``.

    The kernels are compiled once per instruction set (``csrc/cpu/``) and the best one that
    torch's own CPU capability allows is chosen at the first call; ``ATEN_CPU_CAPABILITY``
    (``default``, ``avx2``, ``avx512``), set before torch is imported, lowers both.
    ``"AVX512_BF16"`` is the AVX512 build with AVX512-BF16's float32-to-bfloat16 rounding
    (same bits), run when torch runs AVX512 on a CPU that has it and the variable does not
    pin ``avx512``.
    """
    return torch.ops.eca_cuda.cpu_capability()


def summary() -> str:
    """One line: torch version, CUDA build, compiled archs, CPU kernels, GPU visibility."""
    archs = ", ".join(cuda_archs()) or "none (CPU kernels only)"
    return (
        f"eca_cuda: torch {torch.__version__} (CUDA {torch.version.cuda}); "
        f"CUDA kernels: {archs}; CPU kernels: {cpu_capability()}; "
        f"GPU available: {torch.cuda.is_available()}"
    )
