"""``nn.Module`` form of the fused ECA layer, state-dict compatible with the usual ECA layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from .functional import eca

PADDING_MODES = ("zeros", "circular")


def adaptive_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's adaptive kernel size (paper Eq. 12, as timm's ``EcaModule`` computes it).

    ``t = int(abs(log2(channels) + beta) / gamma)``; ``k = max(t if t is odd else t + 1, 3)``.

    Raises:
        ValueError: ``channels`` < 1 or ``gamma`` <= 0.
    """
    if channels < 1:
        raise ValueError(f"ECA: channels must be a positive int, got {channels}")
    if not gamma > 0:
        raise ValueError(f"ECA: gamma must be > 0, got {gamma}")
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


class ECA(nn.Module):
    """Efficient Channel Attention layer computed by the fused ``eca_cuda`` kernels.

    A drop-in replacement for the authors' ``eca_layer`` (BangguWu/ECANet) and timm's
    ``EcaModule`` (``padding_mode="zeros"``) and ``CecaModule`` (``"circular"``): its only
    parameter is ``conv.weight`` of shape ``(1, 1, kernel_size)``, created and initialised by
    ``nn.Conv1d(1, 1, kernel_size, bias=False)``, so their state dicts load unchanged.

    Args:
        channels: if given, ``kernel_size`` follows :func:`adaptive_kernel_size`.
        kernel_size: odd number of taps (used when ``channels`` is None).
        gamma, beta: parameters of the adaptive rule.
        padding_mode: ``"zeros"`` or ``"circular"``.

    Shape:
        ``(N, C, *spatial) -> (N, C, *spatial)``, dtype and memory format kept.

    Raises:
        ValueError: even or non-positive ``kernel_size``, ``channels`` < 1, ``gamma`` <= 0,
            unknown ``padding_mode``.
    """

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 3,
        gamma: float = 2,
        beta: float = 1,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        if channels is not None:
            kernel_size = adaptive_kernel_size(channels, gamma, beta)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ECA: kernel_size must be a positive odd int, got {kernel_size!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"ECA: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.padding_mode = padding_mode
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return eca(x, self.conv.weight, self.padding_mode)

    def tail(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        scale: float = 1.0,
        gain: torch.Tensor | None = None,
        activation: str = "none",
    ) -> torch.Tensor:
        """This layer and the residual block's tail in one op (:func:`eca_cuda.eca_tail`):
        ``act(self(x) * scale * gain + residual)``; ``gain`` a 0-d tensor or None,
        ``activation`` ``"none"`` or ``"relu"``. The fused blocks of :func:`eca_cuda.convert_eca`
        call it. Raises as :func:`eca_cuda.eca_tail`."""
        return torch.ops.eca_cuda.eca_tail_forward(
            x, self.conv.weight, residual, scale, gain, activation, self.padding_mode
        )[0]

    def extra_repr(self) -> str:
        channels = "" if self.channels is None else f"channels={self.channels}, "
        return f"{channels}kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}"
