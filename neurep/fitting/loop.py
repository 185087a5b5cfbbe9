"""The fitting loop: overfit an encoder/decoder pair to one signal.

Only the decoder and the embedding the encoder produces are kept; the encoder is thrown away
after fitting (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurep.fitting.presets import Plan, Preset
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


#: Shorter memories than Adam's (0.9, 0.999): an overfit's gradients change fast, and the
#: estimates should follow them (RESULTS.md, "Optimiser").
ADAM_BETAS = (0.8, 0.95)

#: Memory layout used while fitting, by tensor rank (4: 2-D signals, 5: 3-D).
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    return math.inf if mse <= 0 else 10.0 * math.log10(peak**2 / mse)


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


def _parameter_groups(
    encoder: list[torch.nn.Parameter], decoder: list[torch.nn.Parameter], preset: Preset
) -> list[dict]:
    """Adam's groups: the encoder's at ``preset.encoder_lr_scale`` times the rate, the
    decoder's at the rate itself (each group's ``lr_scale``; an empty group is left out)."""
    groups = [
        {"params": encoder, "lr_scale": preset.encoder_lr_scale},
        {"params": decoder, "lr_scale": 1.0},
    ]
    return [group for group in groups if group["params"]]


def start_from_mean(decoder: torch.nn.Module, target: torch.Tensor, loss: str) -> None:
    """Set the decoder's output bias so that its first output is about the target's mean.

    Otherwise the first steps of a fit go to learning the mean colour (RESULTS.md,
    "Optimiser"). ``target``: (B, C, *S); for "bce" the bias is the logit of the
    mean occupancy (clamped away from 0 and 1).
    """
    mean = target.mean(dim=(0, *range(2, target.dim())))  # (C,)
    if loss == "bce":
        mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
    with torch.no_grad():
        decoder.output_layer.bias.copy_(mean)


def _loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(recon, target)
    return F.mse_loss(recon, target)


def _embedding_source(
    encoder: torch.nn.Module, padded: torch.Tensor, train: bool
) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[torch.nn.Parameter]]:
    """What produces the embedding each step, and the encoder parameters to optimise.

    Trained: the encoder itself. Frozen: its output at initialisation, computed once.
    """
    if train:
        return encoder, list(encoder.parameters())
    encoder.requires_grad_(False)
    with torch.no_grad():
        fixed = encoder(padded)
    return (lambda _: fixed), []


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
) -> FitResult:
    """Overfit ``plan``'s encoder and decoder to ``signal`` (or the decoder alone, to the
    encoder's initial embedding, when ``plan.preset.train_encoder`` is False).

    Args:
        signal: (B, C, *S) float32 in [0, 1].
        plan: models, padded size and learning-rate settings (see :func:`presets.plan`).
        steps: optimisation steps (Adam).
        seed: seeds the parameter initialisation; the same seed gives the same result.
        loss: "mse" or "bce" (occupancy signals).
        target_psnr: stop early once the training PSNR reaches this (dB).
        progress: show a tqdm bar with the running PSNR.
        device: where to fit (default: CUDA when available, else CPU).

    Returns:
        A :class:`FitResult` whose decoder is on the CPU, in eval mode.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    encoder = build(plan.encoder).to(device)
    decoder = build(plan.decoder).to(device)
    spatial = tuple(signal.shape[2:])
    target = signal.to(device)
    start_from_mean(decoder, target, loss)
    padded = pad_to(target, plan.padded_shape)
    # Channels-last layouts make the depthwise and transposed convolutions several times
    # faster on CPU (benchmarks/README.md); the results come back in the default layout.
    layout = _CHANNELS_LAST.get(padded.dim())
    if layout is not None:
        encoder.to(memory_format=layout)
        decoder.to(memory_format=layout)
        padded = padded.contiguous(memory_format=layout)
    embed, encoder_parameters = _embedding_source(encoder, padded, plan.preset.train_encoder)
    optimiser = torch.optim.Adam(
        _parameter_groups(encoder_parameters, list(decoder.parameters()), plan.preset),
        lr=plan.preset.learning_rate,
        betas=ADAM_BETAS,
    )
    history: list[float] = []
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=description, disable=not progress, leave=False, unit="step")
    step = 0
    for step in range(steps):
        scheduled = _learning_rate(
            step,
            steps,
            plan.preset.learning_rate,
            plan.preset.warmup_steps,
            plan.preset.final_lr_fraction,
        )
        for group in optimiser.param_groups:
            group["lr"] = scheduled * group["lr_scale"]
        recon = _crop(decoder(embed(padded)), spatial)
        objective = _loss(recon, target, loss)
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        with torch.no_grad():
            mse = F.mse_loss(recon.sigmoid() if loss == "bce" else recon.clamp(0, 1), target)
        history.append(psnr_from_mse(mse.item()))
        bar.set_postfix(psnr=f"{history[-1]:.2f} dB", refresh=False)
        bar.update()
        if target_psnr is not None and history[-1] >= target_psnr:
            break
    bar.close()
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        embedding = embed(padded).cpu().contiguous()
    decoder.to(memory_format=torch.contiguous_format)
    return FitResult(
        decoder=decoder.cpu(),
        embedding=embedding,
        steps=step + 1,
        wall_time_s=time.perf_counter() - started,
        history=history,
    )
