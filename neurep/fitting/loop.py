"""The fitting loop: overfit an encoder/decoder pair to one signal.

A datum keeps the decoder and the embedding the encoder produces; the encoder is returned
too, but only collections store it (to embed new items; docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurep.fitting.cpu import with_fit_settings
from neurep.fitting.presets import Plan, Preset
from neurep.fitting.qat import FakeQuantiser, quantisation_aware_steps
from neurep.metrics import psnr_from_mse
from neurep.models import build
from neurep.models.registry import ConfigurableModule

__all__ = ["FitResult", "fit_signal", "pad_to", "psnr_from_mse", "start_from_mean"]


@dataclass
class FitResult:
    """What fitting keeps: the decoder, the embedding, and how the fit went."""

    decoder: ConfigurableModule
    embedding: torch.Tensor  # (B, E, *s)
    steps: int
    wall_time_s: float
    history: list[float] = field(default_factory=list)  # training PSNR (dB) per step
    # The fitted encoder (CPU, eval): kept by collections, which embed new items with it.
    encoder: ConfigurableModule | None = None


#: Shorter memories than Adam's (0.9, 0.999): an overfit's gradients change fast, and the
#: estimates should follow them (RESULTS.md, "Optimiser").
ADAM_BETAS = (0.8, 0.95)

#: Memory layout used while fitting, by tensor rank (4: 2-D signals, 5: 3-D).
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def pad_to(signal: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *S) -> (B, C, *shape), padding at the far end by replicating the border."""
    pads = [
        p
        for s, t in zip(reversed(signal.shape[2:]), reversed(shape), strict=True)
        for p in (0, t - s)
    ]
    if not any(pads):
        return signal
    if signal.dim() - 2 > 3:
        raise ValueError("padding supports at most 3 spatial dimensions")
    return F.pad(signal, pads, mode="replicate")


def _crop(x: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    return x[(..., *(slice(0, s) for s in spatial))]


def _learning_rate(step: int, steps: int, peak: float, warmup: int, final_fraction: float) -> float:
    """Linear warm-up, then cosine decay from ``peak`` to ``peak * final_fraction``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_learning_rates(
    optimiser: torch.optim.Optimizer, step: int, steps: int, preset: Preset
) -> None:
    """Each group's rate at ``step``: the schedule's rate times the group's ``lr_scale``."""
    scheduled = _learning_rate(
        step, steps, preset.learning_rate, preset.warmup_steps, preset.final_lr_fraction
    )
    for group in optimiser.param_groups:
        group["lr"] = scheduled * group["lr_scale"]


def make_optimiser(
    encoder: list[torch.nn.Parameter],
    decoder: list[torch.nn.Parameter],
    preset: Preset,
    fused: bool = True,
) -> torch.optim.Adam:
    """Adam over two groups: the encoder's at ``preset.encoder_lr_scale`` times the rate, the
    decoder's at the rate itself (each group's ``lr_scale``; an empty group is left out).

    ``fused``: one kernel per step instead of a few per parameter (2.2 ms less of a ~90 ms
    default Kodak step on 2 cores). Its rounding depends on where a value sits in the
    tensor, so stacked fits, whose slots must not depend on their position, pass False.
    """
    groups = [
        {"params": encoder, "lr_scale": preset.encoder_lr_scale},
        {"params": decoder, "lr_scale": 1.0},
    ]
    return torch.optim.Adam(
        [group for group in groups if group["params"]],
        lr=preset.learning_rate,
        betas=ADAM_BETAS,
        fused=fused,
    )


def as_unit(signal: torch.Tensor) -> torch.Tensor:
    """A signal as float32 in [0, 1]: uint8 samples stand for ``value / 255``."""
    if signal.dtype == torch.uint8:
        return signal.to(torch.float32).div_(255.0)
    return signal.to(torch.float32)


def channel_mean(signal: torch.Tensor, items_per_chunk: int = 16) -> torch.Tensor:
    """(B, C, *S) -> (C,) float32 mean in [0, 1], converting ``items_per_chunk`` items at a
    time (a uint8 clip is never converted whole)."""
    dims = (0, *range(2, signal.dim()))
    if signal.dtype != torch.uint8:
        return signal.to(torch.float32).mean(dim=dims)
    total = torch.zeros(signal.shape[1], dtype=torch.float64)
    for first in range(0, signal.shape[0], items_per_chunk):
        chunk = as_unit(signal[first : first + items_per_chunk])
        total += chunk.sum(dim=dims, dtype=torch.float64).cpu()
    count = signal.numel() // max(1, signal.shape[1])
    return (total / max(1, count)).to(torch.float32)


def start_from_mean(decoder: torch.nn.Module, target: torch.Tensor, loss: str) -> None:
    """Set the decoder's output bias so that its first output is about the target's mean.

    Otherwise the first steps of a fit go to learning the mean colour (RESULTS.md,
    "Optimiser"). ``target``: (B, C, *S) (float in [0, 1] or uint8); for "bce" the bias is
    the logit of the mean occupancy (clamped away from 0 and 1).
    """
    mean = channel_mean(target).to(decoder.output_layer.bias.device)  # (C,)
    if loss == "bce":
        mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
    with torch.no_grad():
        decoder.output_layer.bias.copy_(mean)


def _loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(recon, target)
    return F.mse_loss(recon, target)


class _Batches:
    """The items of a signal, a batch at a time, as padded float32 tensors on ``device``.

    One batch of all items (images, arrays: B = 1) is made once and reused every step, as
    before batching existed; smaller batches (video frames) are converted from the stored
    signal (uint8 or float) each step, so only a batch is ever float32 on the device.
    """

    def __init__(self, signal: torch.Tensor, size: int, plan: Plan, device, seed: int) -> None:
        self.signal = signal  # (B, C, *S), uint8 or float
        self.size = max(1, min(size, signal.shape[0]))
        self.plan = plan
        self.device = device
        self.whole = self.size == signal.shape[0]
        self._order = torch.Generator().manual_seed(seed)
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def per_epoch(self) -> int:
        return math.ceil(self.signal.shape[0] / self.size)

    def load(self, items: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(target (b, C, *S), padded input (b, C, *padded)) of ``items``, on the device."""
        if self.whole and self._cached is not None:
            return self._cached
        target = as_unit(self.signal[items]).to(self.device)
        padded = pad_to(target, self.plan.padded_shape)
        layout = _CHANNELS_LAST.get(padded.dim())
        if layout is not None:
            padded = padded.contiguous(memory_format=layout)
        if self.whole:
            self._cached = (target, padded)
        return target, padded

    def epoch(self) -> list[torch.Tensor | slice]:
        """One epoch's batches of item indices, in a fresh seeded random order."""
        if self.whole:
            return [slice(None)]
        order = torch.randperm(self.signal.shape[0], generator=self._order)
        return list(order.split(self.size))

    def in_order(self) -> list[slice]:
        """Every item once, in order, a batch at a time (for the final embedding)."""
        items = self.signal.shape[0]
        return [slice(first, first + self.size) for first in range(0, items, self.size)]


def _embedding_source(
    encoder: torch.nn.Module, batches: _Batches, train: bool
) -> tuple[Callable[[torch.Tensor, torch.Tensor | slice], torch.Tensor], list]:
    """What produces a batch's embedding each step, and the encoder parameters to optimise.

    Trained: the encoder itself (from its prepared input, computed once, when every step
    sees the whole signal). Frozen: its output at initialisation, computed once for every
    item (a batch at a time) and indexed.
    """
    if train:
        if batches.whole:  # one input every step: its pyramid (or other prepared form) once
            with torch.no_grad():
                prepared = encoder.prepare(batches.load(slice(None))[1])
            return (lambda _, __: encoder.from_prepared(prepared)), list(encoder.parameters())
        return (lambda padded, _: encoder(padded)), list(encoder.parameters())
    encoder.requires_grad_(False)
    with torch.no_grad():
        fixed = torch.cat([encoder(batches.load(part)[1]) for part in batches.in_order()])
    return (lambda _, items: fixed[items]), []


def _decode(
    decoder: torch.nn.Module, embedding: torch.Tensor, quantiser: FakeQuantiser | None
) -> torch.Tensor:
    """The decoder's output, through rounded weights once ``quantiser`` is set."""
    if quantiser is None:
        return decoder(embedding)
    weights = quantiser(dict(decoder.named_parameters()))
    return torch.func.functional_call(decoder, weights, (embedding,))


@with_fit_settings
def fit_signal(
    signal: torch.Tensor,
    plan: Plan,
    *,
    steps: int,
    seed: int = 0,
    loss: str = "mse",
    target_psnr: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    description: str = "fitting",
    item_label: str = "items",
    quantise_as: str | None = None,
) -> FitResult:
    """Overfit ``plan``'s encoder and decoder to ``signal`` (or the decoder alone, to the
    encoder's initial embedding, when ``plan.preset.train_encoder`` is False).

    Each step trains on a batch of ``plan.preset.batch_items`` items (default: all of them);
    an epoch visits every item once, in a seeded random order. The encoder standardises each
    item's embedding on its own when batches are smaller than the signal (see :func:`plan`),
    so the final embedding, computed in order a batch at a time, matches training.

    Args:
        signal: (B, C, *S): float32 in [0, 1], or uint8 meaning value / 255.
        plan: models, padded size and learning-rate settings (see :func:`presets.plan`).
        steps: optimisation steps (Adam), one batch each.
        seed: seeds the parameter initialisation and the batch order.
        loss: "mse" or "bce" (occupancy signals).
        target_psnr: stop early once the training PSNR (of the last epoch) reaches this (dB).
        progress: show a tqdm bar with the running PSNR (and epoch and items/s if batched).
        device: where to fit (default: CUDA when available, else CPU).
        item_label: what the bar calls an item ("frames" for video).
        quantise_as: the precision the decoder will be stored at: an integer precision makes
            the last steps train through its rounding (:mod:`neurep.fitting.qat`).

    Returns:
        A :class:`FitResult` whose decoder is on the CPU, in eval mode.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    encoder = build(plan.encoder).to(device)
    decoder = build(plan.decoder).to(device)
    spatial = tuple(signal.shape[2:])
    start_from_mean(decoder, signal, loss)
    batches = _Batches(signal, plan.preset.batch_items or signal.shape[0], plan, device, seed)
    # Channels-last layouts make the depthwise and transposed convolutions several times
    # faster on CPU (benchmarks/README.md); the results come back in the default layout.
    layout = _CHANNELS_LAST.get(signal.dim())
    if layout is not None:
        encoder.to(memory_format=layout)
        decoder.to(memory_format=layout)
    embed, encoder_parameters = _embedding_source(encoder, batches, plan.preset.train_encoder)
    optimiser = make_optimiser(encoder_parameters, list(decoder.parameters()), plan.preset)
    history: list[float] = []
    started = time.perf_counter()
    unit = "step" if batches.whole else "batch"
    bar = tqdm(total=steps, desc=description, disable=not progress, leave=False, unit=unit)
    step, epoch_mse = 0, []
    quantised_from = steps - quantisation_aware_steps(steps, quantise_as)
    quantiser: FakeQuantiser | None = None
    schedule = (part for epoch in range(steps) for part in batches.epoch())
    for step, items in zip(range(steps), schedule, strict=False):
        set_learning_rates(optimiser, step, steps, plan.preset)
        target, padded = batches.load(items)
        if quantiser is None and step >= quantised_from:
            quantiser = FakeQuantiser.for_decoder(decoder, quantise_as)
        recon = _crop(_decode(decoder, embed(padded, items), quantiser), spatial)
        objective = _loss(recon, target, loss)
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        with torch.no_grad():
            mse = F.mse_loss(recon.sigmoid() if loss == "bce" else recon.clamp(0, 1), target)
        history.append(psnr_from_mse(mse.item()))
        epoch_mse.append(mse.item())
        if batches.whole:
            bar.set_postfix(psnr=f"{history[-1]:.2f} dB", refresh=False)
            reached = history[-1]
        else:
            reached = None
            if len(epoch_mse) == batches.per_epoch:  # an epoch's mean, then start anew
                reached = psnr_from_mse(sum(epoch_mse) / len(epoch_mse))
                epoch_mse = []
            elapsed = time.perf_counter() - started
            rate = (step + 1) * batches.size / max(elapsed, 1e-9)
            bar.set_postfix(
                {
                    "epoch": f"{step // batches.per_epoch + 1}/"
                    f"{math.ceil(steps / batches.per_epoch)}",
                    f"{item_label}/s": f"{rate:.1f}",
                    "psnr": f"{history[-1]:.2f} dB",
                },
                refresh=False,
            )
        bar.update()
        if target_psnr is not None and reached is not None and reached >= target_psnr:
            break
    bar.close()
    if quantiser is not None:
        quantiser.snap_(decoder)
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        embedding = torch.cat(
            [embed(batches.load(part)[1], part).cpu() for part in batches.in_order()]
        ).contiguous()
    decoder.to(memory_format=torch.contiguous_format)
    encoder.to(memory_format=torch.contiguous_format)
    return FitResult(
        encoder=encoder.cpu(),
        decoder=decoder.cpu(),
        embedding=embedding,
        steps=step + 1,
        wall_time_s=time.perf_counter() - started,
        history=history,
    )
