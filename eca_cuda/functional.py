"""Functional form of the fused ECA layer."""

from __future__ import annotations

import torch

from . import ops  # noqa: F401  (importing it loads the operators)


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
        backward raises. Works under ``torch.compile(fullgraph=True)``, ``torch.export`` and
        ``torch.jit.script`` (the same operator call in each).

    Raises:
        ValueError: rank < 3, non-floating ``x``, even ``k``, bad weight shape or dtype,
            unknown ``padding_mode``.
        RuntimeError: ``weight`` on another device than ``x``.
    """
    # The one way into the operator, from eager code, torch.compile, torch.export and
    # TorchScript alike: the dispatcher runs its autograd kernel (csrc/eca_autograd.cpp), then
    # the device's kernel. (A direct C++ entry that skipped the boxed call saved about 1.5 us
    # per call, too little to show in a model's step time; docs/cpu-kernels.md.)
    return torch.ops.eca_cuda.eca_forward(x, weight, padding_mode)[0]
