"""Fusing a residual block's tail into its ECA layer: ``act(eca(x) * scale + shortcut)`` as one
:func:`eca_cuda.eca_tail` call, where the block would run ECA, the add and the activation as
three passes over the feature map.

Each supported block class gets a forward that runs the block's own submodules up to the ECA
layer and then the fused tail. The block keeps its class (a subclass with that forward, same
name), its children, parameters and names, so state dicts, optimizers and DDP see the same
model. Supported, when the ECA layer is an :class:`eca_cuda.ECA` in the tail position and the
activation after the add is a ReLU or none:

- timm's ResNet ``Bottleneck`` / ``BasicBlock`` (``se``; ``act3`` / ``act2``),
- timm's byobnet ``BottleneckBlock`` / ``BasicBlock`` (``attn_last``; ``act``),
- timm's ``NormFreeBlock`` (``attn_last``; ``attn_gain * alpha``, ``skipinit_gain``; no act),
- the authors' ``ECABottleneck`` / ``ECABasicBlock`` (BangguWu/ECANet ``models/eca_resnet.py``).

In eval mode, the BatchNorm right before the ECA layer (``bn3`` / ``bn2``: timm's ResNet and the
authors' blocks) is folded into the convolution before it, ``conv(x, w * a) + b`` with
``a = gamma / sqrt(running_var + eps)`` and ``b = beta - running_mean * a``, computed at each call
from the current parameters and buffers, so the BatchNorm costs no pass of its own and the fused
tail reads the convolution's output directly. Training keeps the BatchNorm as it is (batch
statistics, running-stat updates).

In training, a block whose ``drop_path`` drops (rate > 0) runs unfused: the per-sample mask is
not folded into the gate. A shortcut of another dtype than the branch (mixed-dtype models) also
runs unfused, as the add would promote.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .modules import ECA


def _folded_conv_bn(
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    bn_weight: torch.Tensor | None,
    bn_bias: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``conv`` followed by eval-mode ``bn``, as one convolution.

    Same formula as ``torch.nn.utils.fusion.fuse_conv_bn_weights``, which returns new leaf
    Parameters: in a forward that would cut the gradient to the convolution and BatchNorm
    parameters. Computed in float32 at least, cast to the convolution weight's dtype.
    """
    assert running_mean is not None and running_var is not None  # checked when fused
    dtype = torch.promote_types(conv_weight.dtype, torch.float32)
    a = torch.rsqrt(running_var.to(dtype) + eps)
    if bn_weight is not None:
        a = a * bn_weight.to(dtype)
    b = -running_mean.to(dtype) * a
    if conv_bias is not None:
        b = b + conv_bias.to(dtype) * a
    if bn_bias is not None:
        b = b + bn_bias.to(dtype)
    weight = conv_weight.to(dtype) * a.reshape(-1, 1, 1, 1)
    return weight.to(conv_weight.dtype), b.to(conv_weight.dtype)


# --- The fused forwards. Each repeats its block's forward up to the ECA layer; the tests
# compare every fused block with its original. TorchScript compiles them (no closures).


def _timm_resnet_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.act1(self.bn1(self.conv1(x)))
    x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
    if self.eca_tail_folds_bn and not self.bn3.training:
        # The BatchNorm folding is written out in each block: TorchScript cannot pass a module
        # to a helper function.
        bn = self.bn3
        weight, bias = _folded_conv_bn(
            self.conv3.weight,
            self.conv3.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            bn.eps,
        )
        x = self.conv3._conv_forward(x, weight, bias)
    else:
        x = self.bn3(self.conv3(x))
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    if (self.training and self.eca_tail_drops) or shortcut.dtype != x.dtype:
        x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        return self.act3(x + shortcut)
    return self.se.tail(x, shortcut, 1.0, None, self.eca_tail_activation)


def _timm_resnet_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
    if self.eca_tail_folds_bn and not self.bn2.training:
        bn = self.bn2
        weight, bias = _folded_conv_bn(
            self.conv2.weight,
            self.conv2.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            bn.eps,
        )
        x = self.conv2._conv_forward(x, weight, bias)
    else:
        x = self.bn2(self.conv2(x))
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    if (self.training and self.eca_tail_drops) or shortcut.dtype != x.dtype:
        x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        return self.act2(x + shortcut)
    return self.se.tail(x, shortcut, 1.0, None, self.eca_tail_activation)


def _timm_byob_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv2b_kxk(self.conv2_kxk(self.conv1_1x1(x)))
    x = self.conv3_1x1(self.attn(x))
    # The tail below is the BasicBlock's too, written out in each: TorchScript cannot pass a
    # module to a helper function.
    residual: torch.Tensor | None = None
    if self.shortcut is not None:
        residual = self.shortcut(shortcut)
    if (self.training and self.eca_tail_drops) or (
        residual is not None and residual.dtype != x.dtype
    ):
        x = self.drop_path(self.attn_last(x))
        if residual is not None:
            x = x + residual
        return self.act(x)
    return self.attn_last.tail(x, residual, 1.0, None, self.eca_tail_activation)


def _timm_byob_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv2_kxk(self.attn(self.conv1_kxk(x)))
    residual: torch.Tensor | None = None
    if self.shortcut is not None:
        residual = self.shortcut(shortcut)
    if (self.training and self.eca_tail_drops) or (
        residual is not None and residual.dtype != x.dtype
    ):
        x = self.drop_path(self.attn_last(x))
        if residual is not None:
            x = x + residual
        return self.act(x)
    return self.attn_last.tail(x, residual, 1.0, None, self.eca_tail_activation)


def _timm_normfree_forward(self, x: torch.Tensor) -> torch.Tensor:
    out = self.act1(x) * self.beta
    shortcut = x
    if self.downsample is not None:
        shortcut = self.downsample(out)
    out = self.conv1(out)
    out = self.conv2(self.act2(out))
    if self.conv2b is not None:
        out = self.conv2b(self.act2b(out))
    if self.attn is not None:
        out = self.attn_gain * self.attn(out)
    out = self.conv3(self.act3(out))
    if (self.training and self.eca_tail_drops) or shortcut.dtype != out.dtype:
        out = self.drop_path(self.attn_gain * self.attn_last(out))
        if self.skipinit_gain is not None:
            out = out * self.skipinit_gain
        return out * self.alpha + shortcut
    return self.attn_last.tail(
        out, shortcut, self.attn_gain * self.alpha, self.skipinit_gain, "none"
    )


def _authors_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    residual = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    if self.eca_tail_folds_bn and not self.bn3.training:
        bn = self.bn3
        weight, bias = _folded_conv_bn(
            self.conv3.weight,
            self.conv3.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            bn.eps,
        )
        out = self.conv3._conv_forward(out, weight, bias)
    else:
        out = self.bn3(self.conv3(out))
    if self.downsample is not None:
        residual = self.downsample(x)
    if residual.dtype != out.dtype:
        return self.relu(self.eca(out) + residual)
    return self.eca.tail(out, residual, 1.0, None, self.eca_tail_activation)


def _authors_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    residual = x
    out = self.relu(self.bn1(self.conv1(x)))
    if self.eca_tail_folds_bn and not self.bn2.training:
        bn = self.bn2
        weight, bias = _folded_conv_bn(
            self.conv2.weight,
            self.conv2.bias,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            bn.eps,
        )
        out = self.conv2._conv_forward(out, weight, bias)
    else:
        out = self.bn2(self.conv2(out))
    if self.downsample is not None:
        residual = self.downsample(x)
    if residual.dtype != out.dtype:
        return self.relu(self.eca(out) + residual)
    return self.eca.tail(out, residual, 1.0, None, self.eca_tail_activation)


# --- Which blocks: (module, class name) -> the ECA attribute, the activation attribute (None:
# no activation), the children the fused forward uses (a block with others is left unfused:
# another version of the class may use them), the forward, and the convolution and BatchNorm
# attributes it folds in eval mode (None: no BatchNorm before the ECA layer).

_BLOCKS: dict[
    tuple[str, str], tuple[str, str | None, frozenset[str], Callable, tuple[str, str] | None]
] = {
    ("timm.models.resnet", "Bottleneck"): (
        "se",
        "act3",
        frozenset("conv1 bn1 act1 conv2 bn2 drop_block act2 aa conv3 bn3 se act3".split())
        | {"downsample", "drop_path"},
        _timm_resnet_bottleneck_forward,
        ("conv3", "bn3"),
    ),
    ("timm.models.resnet", "BasicBlock"): (
        "se",
        "act2",
        frozenset("conv1 bn1 drop_block act1 aa conv2 bn2 se act2 downsample drop_path".split()),
        _timm_resnet_basic_forward,
        ("conv2", "bn2"),
    ),
    ("timm.models.byobnet", "BottleneckBlock"): (
        "attn_last",
        "act",
        frozenset(
            "shortcut conv1_1x1 conv2_kxk conv2b_kxk attn conv3_1x1 attn_last drop_path act".split()
        ),
        _timm_byob_bottleneck_forward,
        None,
    ),
    ("timm.models.byobnet", "BasicBlock"): (
        "attn_last",
        "act",
        frozenset("shortcut conv1_kxk attn conv2_kxk attn_last drop_path act".split()),
        _timm_byob_basic_forward,
        None,
    ),
    ("timm.models.nfnet", "NormFreeBlock"): (
        "attn_last",
        None,
        frozenset(
            "downsample act1 conv1 act2 conv2 act2b conv2b attn act3 conv3 attn_last drop_path".split()
        ),
        _timm_normfree_forward,
        None,
    ),
    ("*", "ECABottleneck"): (
        "eca",
        "relu",
        frozenset("conv1 bn1 conv2 bn2 conv3 bn3 relu eca downsample".split()),
        _authors_bottleneck_forward,
        ("conv3", "bn3"),
    ),
    ("*", "ECABasicBlock"): (
        "eca",
        "relu",
        frozenset("conv1 bn1 relu conv2 bn2 eca downsample".split()),
        _authors_basic_forward,
        ("conv2", "bn2"),
    ),
}

_fused_classes: dict[type, type] = {}


def _spec(block: nn.Module):
    cls = type(block)
    return _BLOCKS.get((cls.__module__, cls.__name__)) or _BLOCKS.get(("*", cls.__name__))


def _activation(module: nn.Module | None) -> str | None:
    """The tail's activation name for the op, or None when the op has no such activation."""
    if module is None or isinstance(module, nn.Identity):
        return "none"
    if type(module) is nn.ReLU:
        return "relu"
    return None


def _drops(drop_path: nn.Module | None) -> bool:
    """Whether ``drop_path`` drops samples in training (timm's DropPath with a rate > 0)."""
    return drop_path is not None and float(getattr(drop_path, "drop_prob", 0.0) or 0.0) > 0


def _folds(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    """Whether eval-mode ``bn`` folds into ``conv``: a plain ``Conv2d`` and a ``BatchNorm2d``
    that keeps running statistics (without them, eval mode normalizes by the batch's)."""
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.running_mean is not None
        and bn.running_var is not None
    )


def fused_class(cls: type, forward: Callable) -> type:
    """``cls`` with the fused ``forward``: same name, so the model prints as before."""
    if cls not in _fused_classes:
        _fused_classes[cls] = type(
            cls.__name__, (cls,), {"forward": forward, "eca_tail_fused": True}
        )
    return _fused_classes[cls]


def fuse_block(block: nn.Module) -> str | None:
    """Fuses ``block``'s tail in place when it is a supported block with an :class:`ECA` in its
    tail. Returns None when fused or when the block is none of the supported classes (nothing
    to say), else why it stays unfused."""
    spec = _spec(block)
    if spec is None or getattr(type(block), "eca_tail_fused", False):
        return None
    eca_name, act_name, children, forward, conv_bn = spec
    if not isinstance(getattr(block, eca_name, None), ECA):
        return None  # no ECA layer there (another attention, or none): no tail to fuse
    extra = {name for name, _ in block.named_children()} - children
    if extra:
        return f"children this version of the block adds: {sorted(extra)}"
    activation = _activation(getattr(block, act_name) if act_name else None)
    if activation is None:
        return f"activation {type(getattr(block, act_name)).__name__} (only ReLU or none fuse)"
    block.eca_tail_activation = activation
    block.eca_tail_drops = _drops(getattr(block, "drop_path", None))
    block.eca_tail_folds_bn = conv_bn is not None and _folds(
        getattr(block, conv_bn[0]), getattr(block, conv_bn[1])
    )
    block.__class__ = fused_class(type(block), forward)
    return None
