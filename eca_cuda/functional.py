"""Functional form of the fused ECA layer."""

from __future__ import annotations

import torch
from torch.overrides import has_torch_function

from . import _C, ops


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
    # tens of microseconds more per forward+backward. Eager calls enter the same operator
    # through _C.forward_y (csrc/eca_python.cpp), about 2 us less than the boxed torch.ops
    # call; torch.compile and __torch_function__ overrides (FX proxies, tensor subclasses,
    # torch function modes) take torch.ops, which they understand.
    if not (torch.compiler.is_compiling() or has_torch_function((x, weight))):
        y = _C.forward_y(x, weight, padding_mode)
        if y is not NotImplemented:  # arguments of other types: the schema's error below
            return y
    return ops.eca_forward(x, weight, padding_mode)[0]
