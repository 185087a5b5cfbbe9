"""A 1x1 convolution for any number of spatial dimensions."""

from __future__ import annotations

import math

import torch
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
        flat = torch.matmul(self.weight, x.reshape(batch, x.shape[1], -1))  # (B, C_out, prod S)
        if self.bias is not None:
            flat = flat + self.bias[:, None]
        return flat.reshape(batch, -1, *spatial)
