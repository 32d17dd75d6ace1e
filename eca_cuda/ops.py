"""Thin wrappers over the C++ operators, and their fake (meta) kernels for torch.compile.

The operators are defined in ``csrc/eca_ops.cpp`` and implemented per device in
``csrc/cpu/`` and ``csrc/cuda/``. Argument checks live in that C++ host code; the fake
kernels here only describe output shapes, dtypes and layouts.
"""

from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loading the library registers the operators)

__all__ = ["eca_forward", "eca_tail_forward", "eca_backward", "eca_tail_backward"]


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def eca_forward(
    x: torch.Tensor, weight: torch.Tensor, padding_mode: str = "zeros"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused ECA forward: ``y = x * sigmoid(conv1d(mean(x), weight))``.

    Args:
        x: ``(N, C, *spatial)``, float16/bfloat16/float32/float64, any strides
            (contiguous and channels_last are read natively, others are copied once).
        weight: ``(k,)`` or ``(1, 1, k)``, ``k`` odd; dtype of ``x``, or float32 for half ``x``.
        padding_mode: ``"zeros"`` (paper) or ``"circular"`` (timm's ``CecaModule``).

    Returns:
        ``(y, pooled, gate)``: ``y`` like ``torch.empty_like(x)``; ``pooled`` (the channel
        means) and ``gate`` (the sigmoid) are ``(N, C)`` in float32 (float64 for float64 ``x``).
        ``y`` is differentiable in ``x`` and ``weight`` through :func:`eca_backward` (the
        operator's autograd kernel, ``csrc/eca_autograd.cpp``); ``pooled`` and ``gate`` are not.

    Raises:
        ValueError: bad rank, dtype, weight shape, even ``k`` or unknown ``padding_mode``.
        RuntimeError: ``weight`` on another device than ``x``; on a double backward through
            ``y`` (not supported).
    """
    return torch.ops.eca_cuda.eca_forward.default(x, weight, padding_mode)


def eca_tail_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    scale: float = 1.0,
    gain: torch.Tensor | None = None,
    activation: str = "none",
    padding_mode: str = "zeros",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused ECA and block tail: ``out = act(x * gate * scale * gain + residual)``.

    Args:
        x, weight, padding_mode: as :func:`eca_forward`.
        residual: None, or the shortcut: ``x``'s shape, dtype and device, any strides.
        scale: a constant factor (NormFreeBlock's ``attn_gain * alpha``).
        gain: None, or a 0-d floating tensor on ``x``'s device (a learned factor such as
            NormFreeBlock's ``skipinit_gain``); may require grad.
        activation: ``"none"`` or ``"relu"``.

    Returns:
        ``(out, pooled, gate)`` as :func:`eca_forward`, ``gate`` the plain sigmoid. ``out``
        is differentiable in ``x``, ``weight``, ``residual`` and ``gain`` (the operator's C++
        autograd kernel, through :func:`eca_backward`).

    Raises:
        ValueError: as :func:`eca_forward`; a residual of another shape or dtype, a gain that
            is not a 0-d floating tensor, an unknown ``activation``.
        RuntimeError: ``residual`` or ``gain`` on another device than ``x``.
    """
    return torch.ops.eca_cuda.eca_tail_forward.default(
        x, weight, residual, scale, gain, activation, padding_mode
    )


def eca_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    pooled: torch.Tensor,
    gate: torch.Tensor,
    padding_mode: str = "zeros",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused ECA backward (``docs/design.md``, "Gradients").

    Args:
        grad_y: gradient of the loss w.r.t. ``y``, shape and dtype of ``x``.
        x, weight, padding_mode: as given to :func:`eca_forward`.
        pooled, gate: the ``(N, C)`` tensors :func:`eca_forward` returned.

    Returns:
        ``(grad_x, grad_weight)``: ``grad_x`` like ``torch.empty_like(x)``; ``grad_weight``
        of ``weight``'s shape and dtype, reduced in a fixed order (deterministic).

    Raises:
        ValueError / RuntimeError: as :func:`eca_forward`, and for mismatched
        ``grad_y``/``pooled``/``gate``.
    """
    return torch.ops.eca_cuda.eca_backward.default(grad_y, x, weight, pooled, gate, padding_mode)


def eca_tail_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    pooled: torch.Tensor,
    gate: torch.Tensor,
    out: torch.Tensor,
    padding_mode: str = "zeros",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of :func:`eca_tail_forward` with ``activation="relu"``, ``scale=1`` and no
    ``gain`` (ResNet's block tail), given its output ``out``: ReLU's backward as
    ``torch.relu``'s (``grad_pre = grad_out`` where ``out > 0``, else 0), then
    :func:`eca_backward` of ``grad_pre``. On CUDA the kernels apply the mask as they read
    ``grad_out``; on the CPU it runs first.

    Args:
        grad_out: gradient of the loss w.r.t. ``out``, shape and dtype of ``x``.
        x, weight, pooled, gate, padding_mode: as :func:`eca_backward`.
        out: the ``out`` :func:`eca_tail_forward` returned, shape and dtype of ``x``.

    Returns:
        ``(grad_x, grad_weight, grad_pre)``: as :func:`eca_backward`, and ``grad_pre`` (the
        residual's gradient) like ``torch.empty_like(x)``.

    Raises:
        ValueError / RuntimeError: as :func:`eca_backward`, and for ``grad_out`` or ``out``
        not matching ``x``.
    """
    return torch.ops.eca_cuda.eca_tail_backward.default(
        grad_out, x, weight, pooled, gate, out, padding_mode
    )


@torch.library.register_fake("eca_cuda::eca_forward")
def _eca_forward_fake(x, weight, padding_mode):
    torch._check(x.device == weight.device, lambda: "eca: weight must be on x's device")
    stats = x.new_empty(x.shape[:2], dtype=_accumulate_dtype(x.dtype))
    return torch.empty_like(x), stats, torch.empty_like(stats)


@torch.library.register_fake("eca_cuda::eca_tail_forward")
def _eca_tail_forward_fake(x, weight, residual, scale, gain, activation, padding_mode):
    for name, t in (("weight", weight), ("residual", residual), ("gain", gain)):
        if t is not None:
            torch._check(
                t.device == x.device, lambda n=name: f"eca_tail: {n} must be on x's device"
            )
    return _eca_forward_fake(x, weight, padding_mode)


@torch.library.register_fake("eca_cuda::eca_backward")
def _eca_backward_fake(grad_y, x, weight, pooled, gate, padding_mode):
    # A meta argument sends the call here even when x is real: check every device, as the
    # C++ host code does.
    for t in (grad_y, weight, pooled, gate):
        torch._check(
            t.device == x.device,
            lambda d=t.device: (
                f"eca_backward: all tensors must be on x's device ({x.device}), got {d}"
            ),
        )
    return torch.empty_like(x), torch.empty_like(weight)


@torch.library.register_fake("eca_cuda::eca_tail_backward")
def _eca_tail_backward_fake(grad_out, x, weight, pooled, gate, out, padding_mode):
    torch._check(out.device == x.device, lambda: "eca_tail_backward: out must be on x's device")
    grad_x, grad_weight = _eca_backward_fake(grad_out, x, weight, pooled, gate, padding_mode)
    return grad_x, grad_weight, torch.empty_like(x)
