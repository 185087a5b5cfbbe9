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


def _check(strides: Sequence[int], widths: Sequence[int]) -> None:
    if len(strides) != len(widths) or not strides:
        raise ValueError("strides and widths must be non-empty and of equal length")
    if min(strides) < 1 or min(widths) < 1:
        raise ValueError("strides and widths must be positive")


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
        super().__init__(
            ndim=ndim,
            in_channels=in_channels,
            out_channels=out_channels,
            strides=strides,
            widths=widths,
        )
        _check(strides, [*widths, out_channels])
        self.total_stride = math.prod(strides)
        channels = [in_channels, *widths, out_channels]
        self.ups = nn.ModuleList(
            conv_transpose_nd(ndim, c_in, c_out, stride, stride=stride)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        self.refines = nn.ModuleList(_Refine(width, ndim) for width in widths)

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
        super().__init__(
            ndim=ndim,
            in_channels=in_channels,
            out_channels=out_channels,
            strides=strides,
            widths=widths,
            kernel_size=kernel_size,
            head_kernel=head_kernel,
        )
        _check(strides, widths)
        self.total_stride = math.prod(strides)
        self.strides = list(strides)
        channels = [in_channels, *widths]
        self.convs = nn.ModuleList(
            conv_nd(ndim, c_in, c_out * stride**ndim, kernel_size, padding=kernel_size // 2)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        self.head = conv_nd(ndim, widths[-1], out_channels, head_kernel, padding=head_kernel // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, E, *s) -> (B, C, *s * prod(strides))."""
        for conv, stride in zip(self.convs, self.strides, strict=True):
            z = F.silu(pixel_shuffle_nd(conv(z), stride))
        return self.head(z)
