"""A 1x1 convolution for any number of spatial dimensions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Pointwise(nn.Module):
    """Mix channels at every position: (B, C_in, *S) -> (B, C_out, *S), for any len(S)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))  # (C_out, C_in)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, *spatial = x.shape
        # A kernel-1 conv1d: one GEMM with the bias fused (a separate add costs a full pass).
        flat = F.conv1d(x.reshape(batch, x.shape[1], -1), self.weight[:, :, None], self.bias)
        return flat.reshape(batch, -1, *spatial)  # (B, C_out, *S)
