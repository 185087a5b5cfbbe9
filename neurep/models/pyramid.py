"""Laplacian pyramid for 1, 2 or 3 spatial dimensions (paper §4.2, Fig. 2c)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["downsample", "laplacian_pyramid", "upsample"]

_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def downsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B, C, *S/2) by 2^d averaging (S must be even)."""
    return _AVG_POOL[x.dim() - 2](x, 2)


def upsample(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *s) -> (B, C, *size) by (bi/tri)linear interpolation."""
    return F.interpolate(x, size=size, mode=_LINEAR_MODE[x.dim() - 2], align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels of ``x``: level j at 1/2^j scale, ``G_j - up(G_{j+1})``.

    Args:
        x: (B, C, *S), every S divisible by 2^(levels-1).
        levels: number of levels L >= 1.

    Returns:
        L tensors; level j is (B, C, *S/2^j); the last is the low-pass remainder G_{L-1}.
        ``x == sum_j up(level_j)`` applied coarse to fine (the pyramid is invertible).
    """
    gaussian = [x]
    for _ in range(levels - 1):
        gaussian.append(downsample(gaussian[-1]))
    bands = [
        fine - upsample(coarse, tuple(fine.shape[2:]))
        for fine, coarse in itertools.pairwise(gaussian)
    ]
    return [*bands, gaussian[-1]]
