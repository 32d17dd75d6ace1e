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


def eca_tail(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    scale: float | torch.Tensor = 1.0,
    activation: str = "none",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """ECA and the residual block's tail in one op: ``act(eca(x) * scale + residual)``.

    What follows the ECA layer in a residual block (timm's ResNet ``Bottleneck`` /
    ``BasicBlock``: ``x += shortcut; act(x)``; ``NormFreeBlock``: ``attn_gain * eca(x) *
    alpha + shortcut``), read and written in the ECA kernels' single rescale pass instead of
    two or three more passes over the feature map. Matches :func:`eca_cuda.reference.eca_tail`.

    Args:
        x, weight, padding_mode: as :func:`eca`.
        residual: None, or the shortcut: ``x``'s shape, dtype and device, any memory format.
        scale: a float, or a 0-d floating tensor on ``x``'s device that may require grad
            (NormFreeBlock's ``skipinit_gain``).
        activation: ``"none"`` or ``"relu"`` (the ones converted timm and authors' models use
            after the residual add).

    Returns:
        ``out``: shape, dtype and memory format of ``x``. Differentiable w.r.t. ``x``,
        ``weight``, ``residual`` and a tensor ``scale`` (fused backward: the ReLU's mask, then
        ECA's backward); saves only ``x``, ``out`` (with ReLU) and ``(N, C)`` tensors, as the
        unfused block saves.

    Raises:
        ValueError: as :func:`eca`; ``residual`` of another shape or dtype, ``scale`` a tensor
            that is not 0-d floating point, unknown ``activation``.
        RuntimeError: ``residual`` or ``scale`` on another device than ``x``.
    """
    if isinstance(scale, torch.Tensor):
        return torch.ops.eca_cuda.eca_tail_forward(
            x, weight, residual, 1.0, scale, activation, padding_mode
        )[0]
    return torch.ops.eca_cuda.eca_tail_forward(
        x, weight, residual, float(scale), None, activation, padding_mode
    )[0]
