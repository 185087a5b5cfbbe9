"""Quantisation steps chosen by measured rate and distortion, per weight channel.

Min-max codes cover each channel's (or tensor's) range in ``2**bits - 1`` steps; once the codes
are entropy-coded (formats 1.2-1.3), a step k times coarser costs about log2(k) fewer bits a weight
and adds about ``(k**2 - 1) * step**2 / 12`` of noise to it. What that noise costs the decode
depends on the channel: :func:`output_sensitivity` estimates, for every weight, the mean squared
change of the decoder's output per unit change of the weight (the Gauss-Newton diagonal, from
random projections of the output). Fewest bits for a given output error then means a step of
``t / sqrt(h_c)`` for every channel, ``h_c`` its mean sensitivity (reverse water-filling).
:func:`choose_steps` bisects ``t`` on the stored datum's real decode: the coarsest steps whose
PSNR stays within ``budget_db`` of plain min-max quantisation, never finer than min-max.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from neurep.datum import NeuralDatum
from neurep.fitting.cpu import with_fit_settings
from neurep.formats.quantize import is_affine, quantize_tensors

__all__ = [
    "DEFAULT_BUDGET_DB",
    "MAX_FACTOR",
    "PROBES",
    "StepScales",
    "choose_steps",
    "output_sensitivity",
]

#: name -> step factor >= 1, one for the tensor or one per quantisation channel (C,).
StepScales = dict[str, float | np.ndarray]

#: PSNR the coarser steps may cost in all, against min-max codes (dB).
DEFAULT_BUDGET_DB = 0.095
#: The coarsest step, as a multiple of the min-max one (a channel the output ignores).
MAX_FACTOR = 32.0
#: Random output projections averaged into the sensitivity estimate.
PROBES = 8
#: Bisection rounds on log t: each stores and measures one candidate.
BISECTION_ROUNDS = 12
#: Decoders with fewer affine weights are stored with min-max steps: the bytes a choice could
#: save are fewer than the measurements would cost in time.
MIN_WEIGHTS = 16384
#: Output elements a sensitivity probe runs at once (items are taken in chunks of about this).
_PROBE_ELEMENTS = 1 << 23


@with_fit_settings
def output_sensitivity(
    decoder: torch.nn.Module,
    embedding: torch.Tensor,
    spatial: tuple[int, ...],
    *,
    probes: int = PROBES,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per weight of each affine-coded tensor: the mean over ``probes`` random unit-variance
    output projections ``v`` of ``(v . d output / d weight)**2``, an unbiased estimate of the
    diagonal of ``J^T J`` (J: the output's Jacobian). Items run in chunks, each with its
    share of the probes (at least one), so a long clip costs about ``probes`` passes plus one
    a chunk. Deterministic for a given ``seed``.

    Args:
        decoder: the fitted decoder (float weights; not modified).
        embedding: (B, E, *s) its input.
        spatial: the signal's spatial shape ``S`` (the decoder's output is cropped to it).

    Returns:
        name -> tensor of the weight's shape (float32), for the tensors storage codes as affine.
    """
    named = {name: p for name, p in decoder.named_parameters() if is_affine(p.detach())}
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named.items()}
    if not named:
        return totals
    generator = torch.Generator().manual_seed(seed)
    crop = (..., *(slice(0, s) for s in spatial))
    items = embedding.shape[0]
    chunk = max(1, _PROBE_ELEMENTS // (4 * math.prod(spatial)))  # items, at ~4 output channels
    with torch.enable_grad():
        for first in range(0, items, chunk):
            output = decoder(embedding[first : first + chunk].detach())[crop]
            # a chunk's share of the probes, at least one: each chunk's mean is unbiased
            count = max(1, math.ceil(probes * output.shape[0] / items))
            for probe in range(count):
                direction = torch.randn(output.shape, generator=generator, dtype=output.dtype)
                grads = torch.autograd.grad(
                    output, list(named.values()), direction, retain_graph=probe < count - 1
                )
                for name, grad in zip(named, grads, strict=True):
                    totals[name] += grad.detach().float() ** 2 / count
    return totals


def choose_steps(
    stored_with: Callable[[StepScales | None], NeuralDatum],
    state: dict[str, torch.Tensor],
    sensitivity: Callable[[], dict[str, torch.Tensor]],
    precision: str = "int8",
    budget_db: float = DEFAULT_BUDGET_DB,
) -> NeuralDatum:
    """The datum with the coarsest per-channel steps within ``budget_db`` of the min-max
    datum's PSNR, or the min-max datum itself (when nothing fits, or the decoder is small).

    Args:
        stored_with: step scales -> the stored datum, its PSNR measured (None: min-max).
        state: the float decoder state storage quantises (name -> tensor).
        sensitivity: () -> :func:`output_sensitivity` of that decoder (called only when
            a choice is made).
        precision: the integer storage precision.
        budget_db: the PSNR the steps may cost against min-max codes.
    """
    base = stored_with(None)
    psnr = _psnr(base)
    affine = {name: t for name, t in state.items() if is_affine(t.detach())}
    if psnr is None or sum(t.numel() for t in affine.values()) < MIN_WEIGHTS:
        return base
    units = _channel_units(affine, sensitivity(), precision)
    positive = np.concatenate([u[u > 0] for u, _ in units.values()])
    if positive.size == 0:
        return base
    low, high = math.log(float(positive.min())), math.log(float(positive.max()) * MAX_FACTOR)
    best, best_bytes = base, _stored_bytes(base)
    for _ in range(BISECTION_ROUNDS):
        middle = (low + high) / 2
        candidate = stored_with(_scales_at(units, math.exp(middle)))
        quality = _psnr(candidate)
        if quality is None or psnr - quality > budget_db:
            high = middle
            continue
        low = middle
        size = _stored_bytes(candidate)
        if size < best_bytes:
            best, best_bytes = candidate, size
    return best


def _channel_units(
    affine: dict[str, torch.Tensor], sensitivity: dict[str, torch.Tensor], precision: str
) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (u (C,), per_channel): a channel's factor at ``t`` is ``t / u`` (clipped to
    [1, MAX_FACTOR]), ``u = min-max step * sqrt(mean sensitivity)`` over the quantisation
    channels storage picks for the tensor."""
    stored, qinfo = quantize_tensors(affine, precision)
    params = stored["__qparams__"].numpy().astype(np.float64)
    units = {}
    for name, entry in qinfo["tensors"].items():
        if entry.get("method") != "affine":
            continue
        h = sensitivity[name].numpy().astype(np.float64)
        per_channel = entry["granularity"] == "channel"
        if per_channel:
            axis = entry["axis"]
            mean = np.moveaxis(h, axis, 0).reshape(h.shape[axis], -1).mean(axis=1)
        else:
            mean = np.asarray([h.mean()])
        step = params[entry["params"] : entry["params"] + mean.size]
        units[name] = (step * np.sqrt(np.maximum(mean, 0.0)), per_channel)
    return units


def _scales_at(units: dict[str, tuple[np.ndarray, bool]], t: float) -> StepScales:
    """The step scales of every channel at ``t`` (tensors left at min-max omitted)."""
    scales: StepScales = {}
    for name, (unit, per_channel) in units.items():
        with np.errstate(divide="ignore"):
            factor = np.clip(np.where(unit > 0, t / unit, MAX_FACTOR), 1.0, MAX_FACTOR)
        if np.all(factor == 1.0):
            continue
        scales[name] = factor if per_channel else float(factor[0])
    return scales


def _stored_bytes(datum: NeuralDatum) -> int:
    """Bytes of the stored weights and embedding codes (what the steps change)."""
    datum.freeze_storage()
    tensors, codes = datum._stored
    return sum(t.numel() * t.element_size() for t in tensors.values()) + codes.nbytes


def _psnr(datum: NeuralDatum) -> float | None:
    value = (datum.metadata.get("quality") or {}).get("psnr")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
