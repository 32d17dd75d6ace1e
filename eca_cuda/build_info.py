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


def summary() -> str:
    """One line: torch version, CUDA build, compiled archs and whether a GPU is visible."""
    archs = ", ".join(cuda_archs()) or "none (CPU kernels only)"
    return (
        f"eca_cuda: torch {torch.__version__} (CUDA {torch.version.cuda}); "
        f"CUDA kernels: {archs}; GPU available: {torch.cuda.is_available()}"
    )
