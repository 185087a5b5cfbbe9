"""Fit several small signals at once: K independent encoder/decoder pairs, trained together.

A 64x64 image's fit spends its time on per-op overhead, not arithmetic: each of its ~100
parameter tensors and every layer's op is dispatched once a step for a few thousand
multiply-adds. :func:`fit_signals_stacked` stacks K models' parameters along a new leading
axis (``torch.func.stack_module_state``) and runs one vmapped forward and backward a step
(``torch.func.functional_call`` under ``torch.vmap``), so each op is dispatched once for all
K models. The K losses are summed: model k's parameters reach only loss k, so each gradient
is the one it would get alone; Adam is elementwise, so one Adam over the stacked tensors is
K separate Adams. Each item is still its own datum: its own seed, its own start from its
mean, its own decoder and embedding, equal to :func:`~neurep.fitting.loop.fit_signal`'s up
to floating-point rounding (tests/fitting/test_stacked_fit.py).

The vmapped models are parameter-less copies of the plan's (:func:`_template`) in which
three pieces run differently, same maths, other rounding, and only here:

- convolutions whose kernel is their stride (1x1, patchify, the decoder's transposed
  ones) are batched matmuls (:class:`_PatchConv`): vmap would make grouped convolutions of
  them, which the CPU runs group by group;
- S3K's window contraction keeps the windows on the last axis, in plain autograd
  (:func:`_fused_states_windows_last`): its own path (:mod:`neurep.nn.window_maps`) is a
  custom autograd Function of tiny per-window matmuls that vmap can only run as they are;
- S3K works in one chunk (its chunked recompute is not vmap-able).

On a 64x64 RGB crop with the fast preset (1 CPU thread) 16 models at once fit about 3.4x
the items a second of one at a time, 24 about 3.9x, at the same PSNR (within 0.01 dB).
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from neurep.fitting.loop import (
    _CHANNELS_LAST,
    ADAM_BETAS,
    FitResult,
    _Batches,
    _crop,
    _flush_subnormals,
    _loss,
    _parameter_groups,
    set_learning_rates,
    start_from_mean,
)
from neurep.fitting.presets import Plan
from neurep.metrics import psnr_from_mse
from neurep.models import build
from neurep.nn.functional import s3k_coefficients
from neurep.nn.s3k import S3KConvNd

__all__ = ["fit_signals_stacked"]


class _PatchConv(torch.nn.Module):
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


class _PatchConvTranspose(torch.nn.Module):
    """A transposed convolution whose kernel is its stride, as one batched matmul and a
    shuffle (see :class:`_PatchConv`)."""

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


def _fused_states_windows_last(
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


def _template(config: dict) -> torch.nn.Module:
    """A parameter-less copy of a model (on the meta device) to call with stacked weights.

    Its S3K layers work in one chunk: the chunked recompute is first-order autograd only,
    not ``vmap`` (see :class:`~neurep.nn.s3k.S3KConvNd`); chunks change memory, not results.
    Its kernel-equals-stride convolutions become batched matmuls (:class:`_PatchConv`).
    """
    with torch.device("meta"):
        module = build(config)
    for layer in module.modules():
        if isinstance(layer, S3KConvNd):
            layer.chunk_elements = None
            layer._fused_states = types.MethodType(_fused_states_windows_last, layer)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _CONVS) and _is_patch(child):
                setattr(parent, name, _PatchConv(child))
            elif isinstance(child, _CONV_TRANSPOSES) and _is_patch(child):
                setattr(parent, name, _PatchConvTranspose(child))
    return module


_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_CONV_TRANSPOSES = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def _check(signals: Sequence[torch.Tensor], seeds: Sequence[int], plan: Plan) -> None:
    if not signals:
        raise ValueError("fit_signals_stacked needs at least one signal")
    if len(seeds) != len(signals):
        raise ValueError(f"{len(signals)} signals but {len(seeds)} seeds")
    shape = tuple(signals[0].shape)
    for index, signal in enumerate(signals):
        if tuple(signal.shape) != shape:
            raise ValueError(
                f"stacked signals must share shape: signal {index} is {tuple(signal.shape)}, "
                f"signal 0 {shape}"
            )
    if len(shape) < 3:
        raise ValueError(f"a signal is (B, C, *S), got shape {shape}")
    batch_items = plan.preset.batch_items
    if batch_items is not None and batch_items < shape[0]:
        raise ValueError("stacked fitting trains on all items a step (no batch_items < B)")


@_flush_subnormals
def fit_signals_stacked(
    signals: Sequence[torch.Tensor],
    plan: Plan,
    *,
    steps: int,
    seeds: Sequence[int],
    loss: str = "mse",
    device: str | torch.device | None = None,
    progress: bool = False,
    description: str = "fitting (stacked)",
) -> list[FitResult]:
    """Fit each of ``signals`` as :func:`~neurep.fitting.loop.fit_signal` would alone, K at once.

    Args:
        signals: K tensors (B, C, *S) of one shape (each float in [0, 1] or uint8), each
            fitted all its B items a step (a plan with ``batch_items`` below B is refused).
        plan: models and settings, shared by all (see :func:`~neurep.fitting.presets.plan`).
        steps: optimisation steps of every fit (no early stop).
        seeds: one per signal, used as ``fit_signal``'s ``seed``.
        loss: "mse" or "bce".
        device: where to fit (default: CUDA when available, else CPU).
        progress: show a tqdm bar with the mean PSNR.

    Returns:
        K :class:`FitResult` in the order of ``signals``: each decoder on the CPU in eval
        mode, its embedding (B, E, *s), its history; ``wall_time_s`` is the stacked fit's
        time divided by K.

    Raises:
        ValueError: signals of different shapes, a seed count that differs, or a
            plan that trains on batches of items.
    """
    _check(signals, seeds, plan)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    count = len(signals)
    spatial = tuple(signals[0].shape[2:])
    layout = _CHANNELS_LAST.get(signals[0].dim())
    train_encoder = plan.preset.train_encoder
    started = time.perf_counter()

    # Each model exactly as fit_signal starts it: seed, encoder, decoder, mean, embedding.
    encoders, decoders, targets, inputs, fixed = [], [], [], [], []
    for signal, seed in zip(signals, seeds, strict=True):
        torch.manual_seed(seed)
        encoder = build(plan.encoder).to(device)
        decoder = build(plan.decoder).to(device)
        start_from_mean(decoder, signal, loss)
        target, padded = _Batches(signal, signal.shape[0], plan, device, seed).load(slice(None))
        if not train_encoder:
            if layout is not None:
                encoder.to(memory_format=layout)
            encoder.requires_grad_(False)
            with torch.no_grad():
                fixed.append(encoder(padded))
        encoders.append(encoder)
        decoders.append(decoder)
        targets.append(target)
        inputs.append(padded)
    target = torch.stack(targets)  # (K, B, C, *S)
    source = torch.stack(inputs if train_encoder else fixed)  # (K, B, C|E, *P|*s)
    decoder_params, decoder_buffers = stack_module_state(decoders)
    encoder_params, encoder_buffers = stack_module_state(encoders) if train_encoder else ({}, {})
    encoder_template, decoder_template = _template(plan.encoder), _template(plan.decoder)

    def one(encoder_state, decoder_state, source, target):
        """One model's step on its own signal: (objective, training MSE)."""
        embedding = functional_call(encoder_template, encoder_state, (source,))
        return two(decoder_state, embedding, target)

    def two(decoder_state, embedding, target):
        recon = _crop(functional_call(decoder_template, decoder_state, (embedding,)), spatial)
        objective = _loss(recon, target, loss)
        shown = recon.detach()
        shown = shown.sigmoid() if loss == "bce" else shown.clamp(0, 1)
        return objective, F.mse_loss(shown, target)

    if train_encoder:
        step_all = torch.vmap(one)
        arguments = ((encoder_params, encoder_buffers), (decoder_params, decoder_buffers))
    else:
        step_all = torch.vmap(two)
        arguments = ((decoder_params, decoder_buffers),)
    optimiser = torch.optim.Adam(
        _parameter_groups(
            list(encoder_params.values()), list(decoder_params.values()), plan.preset
        ),
        lr=plan.preset.learning_rate,
        betas=ADAM_BETAS,
    )
    histories: list[list[float]] = [[] for _ in range(count)]
    bar = tqdm(total=steps, desc=description, disable=not progress, leave=False, unit="step")
    for step in range(steps):
        set_learning_rates(optimiser, step, steps, plan.preset)
        objectives, mses = step_all(*arguments, source, target)
        optimiser.zero_grad(set_to_none=True)
        objectives.sum().backward()  # model k's parameters see only loss k
        optimiser.step()
        for history, mse in zip(histories, mses.tolist(), strict=True):
            history.append(psnr_from_mse(mse))
        bar.set_postfix(psnr=f"{sum(h[-1] for h in histories) / count:.2f} dB", refresh=False)
        bar.update()
    bar.close()

    results = []
    with torch.no_grad():
        for k, (encoder, decoder) in enumerate(zip(encoders, decoders, strict=True)):
            for name, parameter in decoder.named_parameters():
                parameter.copy_(decoder_params[name][k])
            encoder.eval()
            decoder.eval()
            if train_encoder:
                for name, parameter in encoder.named_parameters():
                    parameter.copy_(encoder_params[name][k])
                if layout is not None:  # the final embedding as fit_signal computes it
                    encoder.to(memory_format=layout)
                embedding = encoder(inputs[k])
            else:
                embedding = fixed[k]
            results.append((decoder, embedding.cpu().contiguous()))
    wall_time = (time.perf_counter() - started) / count
    return [
        FitResult(
            decoder=decoder.to(memory_format=torch.contiguous_format).cpu(),
            embedding=embedding,
            steps=steps,
            wall_time_s=wall_time,
            history=history,
        )
        for (decoder, embedding), history in zip(results, histories, strict=True)
    ]
