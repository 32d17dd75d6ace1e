"""Swap the ECA layers of an existing model for :class:`eca_cuda.ECA`, in the manner of
``nn.SyncBatchNorm.convert_sync_batchnorm``."""

from __future__ import annotations

import warnings

from torch import nn

from .fuse import fuse_block
from .modules import ECA


def _timm_eca_classes() -> tuple[type, type] | None:
    """timm's ``(EcaModule, CecaModule)``, wherever this timm version keeps them, or None."""
    for path in ("timm.layers.eca", "timm.models.layers.eca"):
        try:
            module = __import__(path, fromlist=["EcaModule", "CecaModule"])
            return module.EcaModule, module.CecaModule
        except (ImportError, AttributeError):
            continue
    return None


def _is_sigmoid(gate) -> bool:
    # timm's create_act_layer("sigmoid") gives timm.layers.activations.Sigmoid or nn.Sigmoid.
    return isinstance(gate, nn.Sigmoid) or (
        type(gate).__name__ == "Sigmoid" and type(gate).__module__.startswith("timm.")
    )


def _plain_conv(conv, padding: int | None) -> bool:
    """A ``Conv1d(1, 1, k)`` with odd k, no bias, stride/dilation 1 and the given padding."""
    if not isinstance(conv, nn.Conv1d) or conv.in_channels != 1 or conv.out_channels != 1:
        return False
    k = conv.kernel_size[0]
    expected_padding = (k - 1) // 2 if padding is None else padding
    return (
        k % 2 == 1
        and conv.bias is None
        and conv.stride == (1,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and conv.padding == (expected_padding,)
        and conv.padding_mode == "zeros"
    )


def _looks_like_authors_eca(module: nn.Module) -> bool:
    """The authors' ``eca_layer`` layout (BangguWu/ECANet ``models/eca_module.py``), under
    any class name: children ``avg_pool`` (AdaptiveAvgPool2d), ``conv`` (Conv1d 1 -> 1)."""
    children = dict(module.named_children())
    return isinstance(children.get("avg_pool"), nn.AdaptiveAvgPool2d) and isinstance(
        children.get("conv"), nn.Conv1d
    )


def _replacement(module: nn.Module, timm_classes) -> tuple[str, ECA | None] | None:
    """None when ``module`` is no ECA layer; else (kind, the ECA serving it or None when
    this variant cannot be served)."""
    if timm_classes is not None and isinstance(module, timm_classes[0]):
        servable = (
            getattr(module, "conv2", None) is None
            and _plain_conv(module.conv, None)
            and _is_sigmoid(module.gate)
        )
        return "timm EcaModule", _make(module.conv, "zeros") if servable else None
    if timm_classes is not None and isinstance(module, timm_classes[1]):
        k = module.conv.kernel_size[0] if isinstance(module.conv, nn.Conv1d) else 0
        servable = (
            _plain_conv(module.conv, 0)
            and module.padding == (k - 1) // 2
            and _is_sigmoid(module.gate)
        )
        return "timm CecaModule", _make(module.conv, "circular") if servable else None
    if _looks_like_authors_eca(module):
        children = dict(module.named_children())
        servable = (
            set(children) == {"avg_pool", "conv", "sigmoid"}
            and module.avg_pool.output_size in (1, (1, 1))
            and _plain_conv(module.conv, None)
            and isinstance(module.sigmoid, nn.Sigmoid)
        )
        return "authors' eca_layer", _make(module.conv, "zeros") if servable else None
    return None


def _make(conv: nn.Conv1d, padding_mode: str) -> ECA:
    layer = ECA(kernel_size=conv.kernel_size[0], padding_mode=padding_mode)
    layer.conv.weight = conv.weight  # the same Parameter: device, dtype, requires_grad, optimizers
    return layer


def convert_eca(module: nn.Module, *, fuse: bool = True, report_only: bool = False) -> nn.Module:
    """Replace every ECA layer in ``module`` that ``eca_cuda`` can serve with :class:`ECA`, and
    fuse the residual block tails that follow them.

    Served: timm's ``EcaModule`` (sigmoid gate, no ``use_mlp``) and ``CecaModule`` (circular
    padding, no conv bias), found by class in whichever timm is installed; and the authors'
    ``eca_layer`` (BangguWu/ECANet: ``avg_pool`` = ``AdaptiveAvgPool2d(1)``, ``conv`` =
    ``Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)``, ``sigmoid``), recognised by that
    structure under any class name. The new layer holds the old ``conv.weight`` Parameter
    itself (same values, device, dtype, ``requires_grad``; optimizers keep tracking it) and
    the old layer's training mode.

    With ``fuse`` (the default), each residual block whose ECA layer is followed by the add of
    the shortcut and a ReLU or no activation (timm's ResNet, byobnet and NormFree blocks, the
    authors' ECA-ResNet blocks; :mod:`eca_cuda.fuse` lists them) computes ECA, add and
    activation as one :func:`eca_cuda.eca_tail` call. The block keeps its class name, children,
    parameters and module names (``model.layer1[0].se`` is still there), so state dicts,
    optimizers and DDP work unchanged. In training, a block whose ``drop_path`` rate is > 0
    runs unfused (the drop mask is not folded into the gate).

    Args:
        module: any ``nn.Module``; changed in place.
        fuse: also fuse block tails; ``False`` swaps the layers only.
        report_only: only warn about what would be converted and what cannot be.

    Returns:
        ``module``, or a new :class:`ECA` when ``module`` itself is a served ECA layer.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Warns:
        UserWarning: one warning naming every ECA-like layer left in place (an MLP, a conv
        bias, another gate, an even kernel) and every supported block left unfused (another
        activation, children the fused forward does not know), and with ``report_only`` the
        servable ones.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert_eca: module must be an nn.Module, got {type(module).__name__}")
    timm_classes = _timm_eca_classes()
    unserved, servable = [], []

    def visit(name: str, child: nn.Module) -> nn.Module:
        found = _replacement(child, timm_classes)
        if found is None:
            for sub_name, sub in list(child.named_children()):
                new_sub = visit(f"{name}.{sub_name}" if name else sub_name, sub)
                if new_sub is not sub:
                    setattr(child, sub_name, new_sub)
            return child
        kind, layer = found
        label = f"{name or '<root>'} ({kind}, {type(child).__name__})"
        if layer is None:
            unserved.append(label)
            return child
        servable.append(label)
        if report_only:
            return child
        return layer.train(child.training)

    result = visit("", module)
    unfused = []
    if fuse and not report_only:
        for name, block in result.named_modules():
            why = fuse_block(block)
            if why is not None:
                unfused.append(f"{name or '<root>'} ({type(block).__name__}: {why})")
    notes = []
    if unserved:
        notes.append(
            "left these ECA-like layers in place (not a plain sigmoid-gated "
            "Conv1d(1, 1, odd k, bias=False)): " + ", ".join(unserved)
        )
    if unfused:
        notes.append("left these blocks' tails unfused: " + ", ".join(unfused))
    if notes:
        warnings.warn("eca_cuda.convert_eca " + "; ".join(notes), stacklevel=2)
    if report_only and servable:
        warnings.warn(
            "eca_cuda.convert_eca(report_only=True) would convert: " + ", ".join(servable),
            stacklevel=2,
        )
    return result
