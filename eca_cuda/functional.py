"""Functional form of the fused ECA layer."""

from __future__ import annotations

import torch

from . import ops


def eca(x: torch.Tensor, weight: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Efficient Channel Attention (Wang et al., CVPR 2020, Eq. 4 with the sigmoid gate).

    ``y[n, c, ...] = x[n, c, ...] * sigmoid(sum_j weight[j] * mean(x[n, c + j - pad]))``
    with ``pad = (k - 1) // 2``; matches :func:`eca_cuda.reference.eca`, the authors'
    ``eca_layer`` (zeros) and timm's ``EcaModule`` (zeros) / ``CecaModule`` (circular).

    Args:
        x: ``(N, C, *spatial)`` with one or more spatial dims; float16, bfloat16, float32
            or float64; contiguous, channels_last or any strides.
        weight: ``(k,)`` or ``(1, 1, k)`` (a ``Conv1d(1, 1, k)`` weight), ``k`` odd; dtype
            of ``x``, or float32 when ``x`` is half (autocast).
        padding_mode: ``"zeros"`` or ``"circular"`` (wraps modulo C, also for ``k > C``).

    Returns:
        ``y``: shape, dtype and memory format of ``x``. Differentiable w.r.t. ``x`` and
        ``weight`` through a fused backward (the operator's C++ autograd kernel); a double
        backward raises.

    Raises:
        ValueError: rank < 3, non-floating ``x``, even ``k``, bad weight shape or dtype,
            unknown ``padding_mode``.
        RuntimeError: ``weight`` on another device than ``x``.
    """
    # The operator's autograd is in C++ (csrc/eca_autograd.cpp): the Python ECAFunction costs
    # tens of microseconds more per forward+backward.
    return ops.eca_forward(x, weight, padding_mode)[0]
