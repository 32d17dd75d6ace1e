"""The ``torch.autograd.Function`` tying the fused forward and backward operators together."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import ops


class ECAFunction(torch.autograd.Function):
    """Differentiable fused ECA: ``ECAFunction.apply(x, weight, padding_mode) -> y``.

    Shapes, dtypes and errors are those of :func:`eca_cuda.ops.eca_forward`. The backward
    is handwritten (:func:`eca_cuda.ops.eca_backward`) and saves only ``x``, ``weight`` and
    two ``(N, C)`` tensors. Double backward is not supported (it raises). When no gradient
    reaches ``y``, ``x`` and ``weight`` get none from it (``None``, as through the reference's
    ATen ops), not zeros.

    :func:`eca_cuda.eca` gives the same bits through the operator's own autograd kernel in C++
    (``csrc/eca_autograd.cpp``), which costs tens of microseconds less per forward+backward;
    this Python form stays for code that calls it and as the readable statement of that kernel.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding_mode: str = "zeros"):
        y, pooled, gate = ops.eca_forward(x, weight, padding_mode)
        ctx.save_for_backward(x, weight, pooled, gate)
        ctx.padding_mode = padding_mode
        # As the C++ kernel: no zero-filled grad_y when no gradient reaches y.
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor | None):
        if grad_y is None:  # no gradient reached y: none for x and weight either
            return None, None, None
        x, weight, pooled, gate = ctx.saved_tensors
        grad_x, grad_weight = ops.eca_backward(grad_y, x, weight, pooled, gate, ctx.padding_mode)
        return grad_x, grad_weight, None
