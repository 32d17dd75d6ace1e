"""ONNX export of the fused ECA operator as standard ONNX operators.

``torch.onnx.export(..., dynamo=True)`` captures ``eca_cuda::eca_forward`` as one node of the
exported program; the table below tells the exporter how to write that node in standard ONNX
(opset 18): ``ReduceMean`` over the spatial axes, ``Conv`` across channels (after a ``Gather``
that wraps the channels for ``padding_mode="circular"``), ``Sigmoid`` and ``Mul`` (and for a
fused block tail ``Mul``, ``Add`` and ``Relu``), so the model
runs in any ONNX runtime without a custom-op library. Needs ``onnx`` and ``onnxscript``, which
are imported only when the table is built.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .compatibility import release

__all__ = ["onnx_translation_table"]

# The first torch whose torch.export-based exporter takes custom_translation_table (2.6) and
# exports a converted model's fused tails, whose three outputs 2.6's exporter mistypes.
ONNX_MIN_TORCH = "2.7"


def _eca_forward_onnx(x: Any, weight: Any, padding_mode: str = "zeros"):
    """ONNX graph of ``eca_forward(x, weight, padding_mode) -> (y, pooled, gate)``.

    ``pooled`` and ``gate`` are ``(N, C)`` in float32 (float64 for float64 ``x``), as the
    operator returns them; ``y`` has ``x``'s dtype. ``k`` (and ``C`` for circular padding)
    must be static, as they are in a convolutional net.
    """
    from onnxscript import ir
    from onnxscript import opset18 as op

    rank = len(x.shape)
    k = weight.shape[-1]
    pad = (k - 1) // 2
    acc_dtype = ir.DataType.DOUBLE if x.dtype == ir.DataType.DOUBLE else ir.DataType.FLOAT
    spatial_axes = op.Constant(value_ints=list(range(2, rank)))
    channel_axis = op.Constant(value_ints=[1])

    # Mean in the accumulation dtype, as the kernels pool (the Cast vanishes for float32).
    pooled = op.ReduceMean(op.Cast(x, to=acc_dtype), spatial_axes, keepdims=0)  # (N, C)
    taps = op.Reshape(op.Cast(weight, to=acc_dtype), op.Constant(value_ints=[1, 1, k]))
    if padding_mode == "zeros":
        z = op.Conv(op.Unsqueeze(pooled, channel_axis), taps, pads=[pad, pad])
    elif padding_mode == "circular":
        C = x.shape[1]
        if not isinstance(C, int):
            raise ValueError("eca ONNX export: circular padding needs a static channel count")
        # Channels c - pad .. C - 1 + pad modulo C, also for k > C (as eca_cuda.reference).
        wrapped = [(c - pad) % C for c in range(C + 2 * pad)]
        padded = op.Gather(pooled, op.Constant(value_ints=wrapped), axis=1)  # (N, C + 2 pad)
        z = op.Conv(op.Unsqueeze(padded, channel_axis), taps)
    else:
        raise ValueError(
            f"eca ONNX export: padding_mode must be 'zeros' or 'circular', got {padding_mode!r}"
        )
    gate = op.Sigmoid(op.Squeeze(z, channel_axis))  # (N, C)
    y = op.Mul(x, op.CastLike(op.Unsqueeze(gate, spatial_axes), x))
    return y, pooled, gate


def _eca_tail_forward_onnx(
    x: Any,
    weight: Any,
    residual: Any = None,
    scale: float = 1.0,
    gain: Any = None,
    activation: str = "none",
    padding_mode: str = "zeros",
):
    """ONNX graph of ``eca_tail_forward``: the ECA graph above, then ``Mul`` by ``scale`` and
    ``gain``, ``Add`` of the residual and ``Relu``, each only where the call has it."""
    from onnxscript import opset18 as op

    y, pooled, gate = _eca_forward_onnx(x, weight, padding_mode)
    if scale != 1.0:
        y = op.Mul(y, op.CastLike(op.Constant(value_float=scale), y))
    if gain is not None:
        y = op.Mul(y, op.CastLike(gain, y))
    if residual is not None:
        y = op.Add(y, residual)
    if activation == "relu":
        y = op.Relu(y)
    elif activation != "none":
        raise ValueError(
            f"eca_tail ONNX export: activation must be 'none' or 'relu', got {activation!r}"
        )
    return y, pooled, gate


def onnx_translation_table() -> dict[Callable, Callable]:
    """Translation of eca_cuda's operators for the ``torch.export``-based ONNX exporter.

    Usage::

        torch.onnx.export(model, (x,), dynamo=True,
                          custom_translation_table=eca_cuda.onnx_translation_table())

    Each ECA layer becomes ``ReduceMean``, ``Conv`` (``Gather`` + ``Conv`` for circular
    padding), ``Sigmoid`` and ``Mul``; the output matches :func:`eca_cuda.reference.eca`. A
    fused block tail (:func:`eca_cuda.eca_tail`) adds ``Mul`` (scale, gain), ``Add`` (residual)
    and ``Relu``, as the unfused block exports. Only inference graphs are exported (ONNX has
    no backward).

    Returns:
        ``{torch.ops.eca_cuda.eca_forward.default: translation,
        torch.ops.eca_cuda.eca_tail_forward.default: translation}``; merge it with your own
        table if you have one.

    Raises:
        RuntimeError: torch is older than 2.7: ``torch.onnx.export`` has no
            ``custom_translation_table`` before 2.6, and 2.6's fails on a fused tail.
        ImportError: ``onnxscript`` is not installed (``pip install onnx onnxscript``).
    """
    if release(torch.__version__) < release(ONNX_MIN_TORCH):
        raise RuntimeError(
            f"eca_cuda's ONNX export needs torch >= {ONNX_MIN_TORCH} (torch.onnx.export's "
            f"custom_translation_table, and its export of multi-output custom operators), found "
            f"torch {torch.__version__}"
        )
    import onnxscript  # noqa: F401  (fail here, with the package name, not during export)

    return {
        torch.ops.eca_cuda.eca_forward.default: _eca_forward_onnx,
        torch.ops.eca_cuda.eca_tail_forward.default: _eca_tail_forward_onnx,
    }
