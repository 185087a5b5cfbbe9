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
        flat = x.reshape(batch, x.shape[1], -1)  # (B, C_in, prod S)
        weight = self.weight.expand(batch, -1, -1)  # (B, C_out, C_in), no copy
        if self.bias is None:
            out = torch.bmm(weight, flat)
        else:  # the bias rides in the GEMM (a separate add is a full pass; conv1d is slower)
            out = torch.baddbmm(self.bias[None, :, None], weight, flat)
        return out.reshape(batch, -1, *spatial)  # (B, C_out, *S)
