"""Parameter-less copies of models to call with stacked weights under ``torch.vmap``.

:func:`vmappable_template` builds a model on the meta device and swaps three pieces for
forms that vmap runs fast on the CPU, same maths, other rounding:

- convolutions whose kernel is their stride (1x1, patchify, the decoder's transposed
  ones) become batched matmuls (:class:`PatchConv`, :class:`PatchConvTranspose`): vmap
  would make grouped convolutions of them, which the CPU runs group by group;
- S3K's window contraction keeps the windows on the last axis, in plain autograd
  (:func:`fused_states_windows_last`): its own path (:mod:`neurep.nn.window_maps`) is a
  custom autograd Function of tiny per-window matmuls that vmap can only run as they are;
- S3K works in one chunk (its chunked recompute is not vmap-able).

Stacked fitting (:mod:`neurep.fitting.stacked`) and batched decoding
(:mod:`neurep.data.batch`) call the template with ``torch.func.functional_call``.
"""

from __future__ import annotations

import math
import types

import torch

from neurep.models.registry import build
from neurep.nn.functional import s3k_coefficients
from neurep.nn.s3k import S3KConvNd

__all__ = ["PatchConv", "PatchConvTranspose", "fused_states_windows_last", "vmappable_template"]


class PatchConv(torch.nn.Module):
    """A convolution whose kernel is its stride (1x1 and patchify ones), as one batched matmul.

    Under ``vmap`` a convolution with stacked weights becomes a grouped convolution, which
    the CPU runs group by group; a matmul becomes one batched GEMM. Same parameters (names
    and shapes) as the ``nn.ConvNd`` it stands for, same result up to rounding.
    """

    def __init__(self, conv: torch.nn.Module) -> None:
        super().__init__()
        self.weight = conv.weight  # (C_out, C_in, *k)
        self.bias = conv.bias  # (C_out,) or None
        self.kernel = tuple(conv.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        out_channels = self.weight.shape[0]
        weight = self.weight.reshape(out_channels, -1)  # (C_out, C_in * prod k)
        out = [s // k for s, k in zip(spatial, self.kernel, strict=True)]
        if any(k > 1 for k in self.kernel):  # (B, C, O_1 K_1, ..) -> (B, C * prod K, prod O)
            x = x[(..., *(slice(0, o * k) for o, k in zip(out, self.kernel, strict=True)))]
            split = [d for pair in zip(out, self.kernel, strict=True) for d in pair]
            x = x.reshape(batch, channels, *split)
            ndim = len(spatial)
            order = [0, 1, *range(3, 2 + 2 * ndim, 2), *range(2, 2 + 2 * ndim, 2)]
            x = x.permute(order)  # (B, C, K_1..K_d, O_1..O_d)
        flat = x.reshape(batch, weight.shape[1], -1)
        weight = weight.expand(batch, -1, -1)
        if self.bias is None:
            result = torch.bmm(weight, flat)
        else:
            result = torch.baddbmm(self.bias[None, :, None], weight, flat)
        return result.reshape(batch, out_channels, *out)


class PatchConvTranspose(torch.nn.Module):
    """A transposed convolution whose kernel is its stride, as one batched matmul and a
    shuffle (see :class:`PatchConv`)."""

    def __init__(self, conv: torch.nn.Module) -> None:
        super().__init__()
        self.weight = conv.weight  # (C_in, C_out, *k)
        self.bias = conv.bias
        self.kernel = tuple(conv.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        out_channels, ndim = self.weight.shape[1], len(spatial)
        taps = math.prod(self.kernel)
        weight = self.weight.reshape(channels, -1).t().expand(batch, -1, -1)  # (B, C_o K, C_i)
        flat = x.reshape(batch, channels, -1)
        if self.bias is None:
            result = torch.bmm(weight, flat)
        else:
            bias = self.bias[:, None].expand(-1, taps).reshape(-1)  # (C_out * prod K,)
            result = torch.baddbmm(bias[None, :, None], weight, flat)
        result = result.reshape(batch, out_channels, *self.kernel, *spatial)
        order = [0, 1, *(i for axis in range(ndim) for i in (2 + ndim + axis, 2 + axis))]
        size = [s * k for s, k in zip(spatial, self.kernel, strict=True)]
        return result.permute(order).reshape(batch, out_channels, *size)


def fused_states_windows_last(
    self: S3KConvNd, flat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`S3KConvNd._fused_states` with the windows on the last axis, in plain autograd.

    The layer's own path contracts every window with its own kernel in batched matmuls of
    a few rows each (4x4 by 4x8 for a 64x64 image), which run far below the CPU's speed;
    with the P windows as the innermost axis the same sums are long vectorised loops. Same
    maths (:meth:`S3KConvNd.axis_kernels` + :func:`contract_windows`), other rounding.
    (P, *K) windows -> (P, N) states, (P,) averages.
    """
    lam, dt = self.ssm_parameters()
    window = tuple(flat.shape[1:])
    x = flat.reshape(flat.shape[0], -1).t().contiguous().reshape(*window, -1)  # (K.., P)
    bias = self.b_bias.to(flat.dtype)  # (d, N)
    kernels = []
    for axis, length in enumerate(window):
        coefficients = s3k_coefficients(lam[axis], dt[axis], length).to(flat.dtype)  # (N, K)
        # B of this axis from the others (Z of them, row-major; Z = 1 in 1-D).
        others = x.movedim(axis, 0).reshape(length, -1, x.shape[-1])  # (K, Z, P)
        b = torch.matmul(self.b_weight[axis].to(flat.dtype).t(), others)  # (K, N, P)
        kernels.append(coefficients.t()[:, :, None] * (b + bias[axis][None, :, None]))
    # Contract the last axis first: (..., K_d, P) x (K_d, N, P) -> (..., N, P), and so on.
    partial = (x[..., None, :] * kernels[-1]).sum(dim=-3)  # (K_1..K_{d-1}, N, P)
    for kernel in reversed(kernels[:-1]):
        partial = (partial * kernel).sum(dim=-3)  # contract the axis before N
    averages = x.reshape(-1, x.shape[-1]).mean(dim=0)  # (P,)
    return partial.t(), averages


def _is_patch(conv: torch.nn.Module) -> bool:
    return (
        tuple(conv.kernel_size) == tuple(conv.stride)
        and not any(conv.padding)
        and all(d == 1 for d in conv.dilation)
        and conv.groups == 1
        and not any(getattr(conv, "output_padding", ()))
        and conv.padding_mode == "zeros"
    )


def vmappable_template(config: dict) -> torch.nn.Module:
    """A parameter-less copy of a model (on the meta device) to call with stacked weights.

    Its S3K layers work in one chunk: the chunked recompute is first-order autograd only,
    not ``vmap`` (see :class:`~neurep.nn.s3k.S3KConvNd`); chunks change memory, not results.
    Its kernel-equals-stride convolutions become batched matmuls (:class:`PatchConv`).
    """
    with torch.device("meta"):
        module = build(config)
    for layer in module.modules():
        if isinstance(layer, S3KConvNd):
            layer.chunk_elements = None
            layer._fused_states = types.MethodType(fused_states_windows_last, layer)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _CONVS) and _is_patch(child):
                setattr(parent, name, PatchConv(child))
            elif isinstance(child, _CONV_TRANSPOSES) and _is_patch(child):
                setattr(parent, name, PatchConvTranspose(child))
    return module


_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_CONV_TRANSPOSES = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
