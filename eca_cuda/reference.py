"""Pure-PyTorch ECA, the reference every test and benchmark compares against.

It follows the authors' ``eca_layer`` and timm's ``EcaModule``: mean over the spatial dims,
``conv1d`` across channels, sigmoid, multiply. Circular padding gathers channels modulo C,
which equals timm's ``CecaModule`` (``F.pad(..., mode="circular")``) and extends it to
``k > C``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import modules


def eca(x: torch.Tensor, weight: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Reference ECA; same signature and result as :func:`eca_cuda.eca`.

    Args:
        x: ``(N, C, *spatial)``, floating point.
        weight: ``(k,)`` or ``(1, 1, k)``; cast to the dtype of the pooled ``x``.
        padding_mode: ``"zeros"`` or ``"circular"``.

    Returns:
        ``x * sigmoid(conv1d(mean(x)))`` in ``x``'s dtype, computed by stock PyTorch ops.

    Raises:
        ValueError: unknown ``padding_mode``.
    """
    k = weight.shape[-1]
    pad = (k - 1) // 2
    channels = x.shape[1]
    pooled = x.mean(dim=tuple(range(2, x.dim())))  # (N, C)
    w = weight.reshape(k).to(pooled.dtype)
    if channels == 0:  # (N, 0), still a function of w; conv1d rejects a length-0 input
        z = (pooled.unsqueeze(-1) * w).sum(-1)
    elif padding_mode == "zeros":
        z = F.conv1d(pooled.unsqueeze(1), w.view(1, 1, k), padding=pad).squeeze(1)
    elif padding_mode == "circular":
        offsets = torch.arange(k, device=x.device) - pad
        taps = (torch.arange(channels, device=x.device)[:, None] + offsets) % max(channels, 1)
        z = (pooled[:, taps] * w).sum(-1)
    else:
        raise ValueError(f"eca: padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")
    gate = torch.sigmoid(z)
    return x * gate.reshape(*gate.shape, *([1] * (x.dim() - 2)))


def eca_tail(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    scale: float | torch.Tensor = 1.0,
    activation: str = "none",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Reference block tail; same signature and result as :func:`eca_cuda.eca_tail`.

    Computes, as an unfused block does, ``act(eca(x) * scale + residual)``.

    Raises:
        ValueError: unknown ``activation`` or ``padding_mode``.
    """
    if activation not in ("none", "relu"):
        raise ValueError(f"eca_tail: activation must be 'none' or 'relu', got {activation!r}")
    out = eca(x, weight, padding_mode)
    if not (isinstance(scale, float | int) and scale == 1):
        out = out * scale
    if residual is not None:
        out = out + residual
    return torch.relu(out) if activation == "relu" else out


class ECA(modules.ECA):
    """:class:`eca_cuda.ECA` computed by the reference: same parameters, init and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return eca(x, self.conv.weight, self.padding_mode)
