"""Building blocks shared by encoders and decoders, for 1, 2 or 3 spatial dimensions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChannelRMSNorm",
    "InvertedBottleneck",
    "conv_nd",
    "conv_transpose_nd",
    "pixel_shuffle_nd",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _check_ndim(ndim: int) -> None:
    if ndim not in _CONV:
        raise ValueError(f"convolutional blocks support 1, 2 or 3 spatial dimensions, not {ndim}")


def conv_nd(ndim: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv{ndim}d(*args, **kwargs)``."""
    _check_ndim(ndim)
    return _CONV[ndim](*args, **kwargs)


def conv_transpose_nd(ndim: int, *args, **kwargs) -> nn.Module:
    """``nn.ConvTranspose{ndim}d(*args, **kwargs)``."""
    _check_ndim(ndim)
    return _CONV_TRANSPOSE[ndim](*args, **kwargs)


def pixel_shuffle_nd(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C * r^d, *S) -> (B, C, *(S * r)): PixelShuffle for any number d of spatial axes."""
    batch, channels, *spatial = x.shape
    ndim = len(spatial)
    out_channels = channels // factor**ndim
    x = x.reshape(batch, out_channels, *([factor] * ndim), *spatial)
    # (B, C, r_1..r_d, S_1..S_d) -> (B, C, S_1, r_1, ..., S_d, r_d)
    order = [0, 1] + [i for axis in range(ndim) for i in (2 + ndim + axis, 2 + axis)]
    return x.permute(order).reshape(batch, out_channels, *(s * factor for s in spatial))


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channel axis of (B, C, *S), with a learned per-channel gain."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)  # (B, 1, *S)
        return x * scale * self.gain.reshape(1, -1, *([1] * (x.dim() - 2)))


class InvertedBottleneck(nn.Module):
    """ConvNeXt-style block: x + project(SiLU(expand(norm(depthwise(x))))).

    (B, C, *S) -> (B, C, *S); depthwise k^d convolution, RMSNorm, 1x1 expand by ``expansion``,
    SiLU, 1x1 project back, residual.
    """

    def __init__(self, channels: int, ndim: int, kernel_size: int = 3, expansion: int = 4) -> None:
        super().__init__()
        self.depthwise = conv_nd(
            ndim, channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        self.norm = ChannelRMSNorm(channels)
        self.expand = conv_nd(ndim, channels, channels * expansion, 1)
        self.project = conv_nd(ndim, channels * expansion, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.silu(self.expand(self.norm(self.depthwise(x)))))
