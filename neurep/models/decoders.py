"""Decoders: embedding (B, E, *s) -> signal (B, C, *s * prod(strides)).

Only the decoder and the embedding are stored in a ``.nrep`` file, so a decoder must be fully
described by its configuration (see :mod:`neurep.models.registry`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurep.models.registry import ConfigurableModule, register
from neurep.nn.blocks import conv_nd, conv_transpose_nd, pixel_shuffle_nd

__all__ = ["ConvTransposeDecoder", "NeRVDecoder"]


class _Refine(nn.Module):
    """x + depthwise_k(SiLU(x)): a cheap local smoothing after an upsampling step."""

    def __init__(self, channels: int, ndim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = conv_nd(
            ndim, channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.depthwise(F.silu(x))


#: Bounds on decoder configurations, so a file cannot make neurep build an absurd network.
MAX_STAGES, MAX_STRIDE, MAX_CHANNELS = 16, 64, 4096


def _check(ndim: int, strides: Sequence[int], channels: Sequence[int]) -> None:
    """Validate a decoder configuration (it may come from an untrusted file)."""
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, not {ndim!r}")
    if not strides or len(strides) != len(channels) or len(strides) > MAX_STAGES:
        raise ValueError(f"need 1..{MAX_STAGES} stages with one width each")
    values = [*strides, *channels]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError("strides and widths must be integers")
    if not all(1 <= s <= MAX_STRIDE for s in strides):
        raise ValueError(f"strides must be in 1..{MAX_STRIDE}")
    if not all(1 <= c <= MAX_CHANNELS for c in channels):
        raise ValueError(f"widths and channels must be in 1..{MAX_CHANNELS}")


@register("conv_transpose")
class ConvTransposeDecoder(ConfigurableModule):
    """Transposed convolutions (kernel = stride); SiLU and a depthwise refinement between them.

    The last stage maps straight to the signal's channels, so no hidden-width tensor ever
    exists at full resolution (that is where a CPU step spends its time).

    Args:
        ndim: spatial dimensions (1, 2, 3).
        in_channels: E, the embedding's channels.
        out_channels: C of the signal.
        strides: per-stage upsampling, e.g. [4, 4, 4, 2, 2] (paper Table A4, Kodak).
        widths: channels after each stage but the last (len(strides) - 1 entries).
    """

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        out_channels: int,
        strides: Sequence[int],
        widths: Sequence[int],
    ) -> None:
        super().__init__()
        _check(ndim, strides, [*widths, out_channels])
        if not 1 <= in_channels <= MAX_CHANNELS:
            raise ValueError(f"in_channels must be in 1..{MAX_CHANNELS}")
        self.total_stride = math.prod(strides)
        channels = [in_channels, *widths, out_channels]
        self.ups = nn.ModuleList(
            conv_transpose_nd(ndim, c_in, c_out, stride, stride=stride)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        self.refines = nn.ModuleList(_Refine(width, ndim) for width in widths)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose bias is the output's per-channel offset."""
        return self.ups[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, E, *s) -> (B, C, *s * prod(strides))."""
        for up, refine in zip(self.ups[:-1], self.refines, strict=True):
            z = refine(F.silu(up(z)))
        return self.ups[-1](z)


@register("nerv")
class NeRVDecoder(ConfigurableModule):
    """NeRV/HNeRV-style blocks: conv k -> pixel shuffle by the stride -> SiLU, then a head.

    Same arguments as :class:`ConvTransposeDecoder`, plus ``kernel_size`` of the block convs.
    """

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        out_channels: int,
        strides: Sequence[int],
        widths: Sequence[int],
        kernel_size: int = 3,
        head_kernel: int = 3,
    ) -> None:
        super().__init__()
        _check(ndim, strides, widths)
        if not (1 <= in_channels <= MAX_CHANNELS and 1 <= out_channels <= MAX_CHANNELS):
            raise ValueError(f"channels must be in 1..{MAX_CHANNELS}")
        if kernel_size not in (1, 3, 5, 7) or head_kernel not in (1, 3, 5, 7):
            raise ValueError("kernel sizes must be 1, 3, 5 or 7")
        self.total_stride = math.prod(strides)
        self.strides = list(strides)
        channels = [in_channels, *widths]
        self.convs = nn.ModuleList(
            conv_nd(ndim, c_in, c_out * stride**ndim, kernel_size, padding=kernel_size // 2)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        self.head = conv_nd(ndim, widths[-1], out_channels, head_kernel, padding=head_kernel // 2)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose bias is the output's per-channel offset."""
        return self.head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, E, *s) -> (B, C, *s * prod(strides))."""
        for conv, stride in zip(self.convs, self.strides, strict=True):
            z = F.silu(pixel_shuffle_nd(conv(z), stride))
        return self.head(z)
