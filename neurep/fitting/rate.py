"""Rate control: the decoder's width and precision that keep the file within a byte budget.

The size that counts is the written ``.nrep`` file. Before fitting, candidates (a width
scale of the preset's decoder and a weight precision) are sized exactly by writing a dry-run
file with the candidate's real shapes and metadata (weights are untrained, but quantised
sizes depend on little more than shapes). Precisions are tried in order of preference
(:data:`PRECISION_LADDER`: int8 only at the preset's full width, then int6, int5, int4) and
the first with any width that fits is fitted at its widest such width, found by bisection
on a fine ladder of scales (:data:`WIDTH_SCALES`), with a small margin for the parts that
depend on the fitted values (JSON number lengths, the embedding's zstd chunk). The fit's last
steps train through that precision's rounding (:mod:`neurep.fitting.qat`); afterwards
:func:`store_within` checks the real file and, if it is still over, lowers the precision of
the fitted weights until it fits (no refit needed).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from neurep.datum import NeuralDatum
from neurep.errors import InputError
from neurep.fitting.presets import Plan, Preset, plan
from neurep.metadata import PLACEHOLDER_QUALITY, FitRecord, datum_metadata, with_quality
from neurep.models import build

__all__ = [
    "PRECISION_LADDER",
    "WIDTH_SCALES",
    "Candidate",
    "budget_bytes",
    "choose_for_budget",
    "lower_precisions",
    "scaled_preset",
    "store_within",
]

#: Weight precisions tried for a budget, in order of preference. With quantisation-aware final
#: steps, int6 at a wider decoder beat int8 at a narrower one and int4/int5 at a wider one, at
#: the same bytes (RESULTS.md, "Rate"); int8 is kept for budgets the full width fits at 8 bits.
PRECISION_LADDER = ("int8", "int6", "int5", "int4")
#: Width multipliers of the preset's decoder, largest first: 1 down to 1/8 in steps of
#: 8^(1/64) (about 7% more parameters a step), so a budget's bytes are nearly all spent.
#: Never wider than the preset: a wider decoder at fewer bits trained worse in the same steps.
WIDTH_SCALES = tuple(round(8 ** (-i / 64), 4) for i in range(65))
#: Precisions that are only worth their bits at the preset's full width.
FULL_WIDTH_ONLY = ("int8",)
#: Bytes kept free for what depends on fitted values (JSON numbers, compressed chunks).
SIZE_MARGIN = 256


@dataclass(frozen=True)
class Candidate:
    """One way to meet a budget: the scaled preset, its plan, precision and dry-run size."""

    preset: Preset
    plan: Plan
    precision: str
    width_scale: float
    predicted_bytes: int


def budget_bytes(
    adapter, signal: torch.Tensor, *, bpp: float | None, max_bytes: int | None
) -> int | None:
    """The byte budget a ``bpp=`` or ``max_bytes=`` request means for this datum (or None).

    Bits per pixel divide by the datum's pixels (images) or its elements per channel.
    """
    if bpp is not None and max_bytes is not None:
        raise InputError("give either bpp= or max_bytes=, not both")
    if bpp is None:
        return max_bytes
    pixels = adapter.num_pixels or int(signal.shape[0] * np.prod(signal.shape[2:]))
    return int(bpp * pixels / 8)


def scaled_preset(preset: Preset, scale: float) -> Preset:
    """The preset with every decoder width multiplied by ``scale`` (at least 2 channels),
    in its profiles too."""

    def scaled(widths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(2, round(w * scale)) for w in widths)

    profiles = {
        name: {**settings, "decoder_widths": scaled(settings["decoder_widths"])}
        if "decoder_widths" in settings
        else settings
        for name, settings in preset.profiles.items()
    }
    return replace(preset, decoder_widths=scaled(preset.decoder_widths), profiles=profiles)


def lower_precisions(precision: str) -> list[str]:
    """The precisions below ``precision`` on the ladder, to fall back to after fitting."""
    if precision not in PRECISION_LADDER:
        return list(PRECISION_LADDER)
    return list(PRECISION_LADDER[PRECISION_LADDER.index(precision) + 1 :])


def choose_for_budget(
    preset: Preset,
    adapter,
    signal: torch.Tensor,
    max_bytes: int,
    precisions: tuple[str, ...] = PRECISION_LADDER,
    embedding_precision: str | None = None,
) -> Candidate:
    """The preferred (precision, embedding width, decoder width) whose dry-run file is at most
    ``max_bytes - margin``.

    Precisions are tried in the order given (the default ladder: see the module docstring;
    int8 only at full width when other precisions are offered); the first that fits at any
    width wins, at its widest fitting width. Where the preset lists narrower embeddings
    (video), each is a candidate and the one with the largest payload (weight plus embedding
    bits) wins. ``preset`` is already specialised to the datum's profile; ``signal`` is
    (B, C, *S); ``embedding_precision`` is the one the datum will be stored at (None: the
    default for each weight precision).

    Raises:
        InputError: not even the smallest candidate fits; the message gives its size.
    """
    limit = max_bytes - min(SIZE_MARGIN, max_bytes // 20)
    items = signal.shape[0]
    smallest: list[int] = []
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "dry.nrep"

        def size_of(scaled: Preset, precision: str) -> tuple[Plan, int]:
            models = plan(scaled, signal.shape[1], tuple(signal.shape[2:]), items=items)
            size = _dry_run_size(adapter, signal, models, precision, path, embedding_precision)
            return models, size

        for precision in precisions:
            scales = _scales_for(precision, precisions)
            found = []
            for embedding in _embedding_choices(preset):
                widest = _widest_within(embedding, precision, scales, limit, size_of, smallest)
                if widest is not None:
                    found.append(widest)
            if found:
                return max(found, key=lambda c: _payload_bits(c.plan, c.precision, items))
    raise InputError(
        f"a budget of {max_bytes} bytes is too small: the smallest neural datum for this input "
        f"needs about {min(smallest) + SIZE_MARGIN} bytes (decoder width x{WIDTH_SCALES[-1]}, "
        f"{precisions[-1]} weights)"
    )


def _scales_for(precision: str, precisions: tuple[str, ...]) -> tuple[float, ...]:
    """The width scales a budget may fit ``precision`` at: only the full width for the
    precisions kept for it, unless nothing else is offered."""
    if precision in FULL_WIDTH_ONLY and any(p not in FULL_WIDTH_ONLY for p in precisions):
        return WIDTH_SCALES[:1]
    return WIDTH_SCALES


def _widest_within(
    preset: Preset,
    precision: str,
    scales: tuple[float, ...],
    limit: int,
    size_of: Callable[[Preset, str], tuple[Plan, int]],
    smallest: list[int],
) -> Candidate | None:
    """The candidate at the largest of ``scales`` (largest first) whose size is at most
    ``limit``, by bisection (sizes grow with the width); None when even the last is over.
    Every size measured at the narrowest scale is appended to ``smallest``."""

    def candidate(index: int) -> Candidate:
        scaled = scaled_preset(preset, scales[index])
        models, size = size_of(scaled, precision)
        return Candidate(scaled, models, precision, scales[index], size)

    narrowest = candidate(len(scales) - 1)
    smallest.append(narrowest.predicted_bytes)
    if narrowest.predicted_bytes > limit:
        return None
    best, low, high = narrowest, 0, len(scales) - 1  # scales[high] fits; find the first fit
    while low < high:
        middle = (low + high) // 2
        tried = candidate(middle)
        if tried.predicted_bytes <= limit:
            best, high = tried, middle
        else:
            low = middle + 1
    return best


def store_within(
    store_at: Callable[[str], NeuralDatum], precision: str, max_bytes: int
) -> NeuralDatum:
    """``store_at(precision)``, or at the first lower precision whose file fits ``max_bytes``.

    ``store_at`` quantises the fitted float32 datum at a precision (no refit); each
    measurement writes a whole file, once per precision tried.
    """
    datum = store_at(precision)
    size = _saved_size(datum)
    for fallback in lower_precisions(precision):
        if size <= max_bytes:
            break
        datum = store_at(fallback)
        size = _saved_size(datum)
    if size > max_bytes:
        raise InputError(f"could not fit the datum in {max_bytes} bytes (smallest: {size})")
    return datum


def _saved_size(datum: NeuralDatum) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        return datum.save(Path(workdir) / "size.nrep")


def _dry_run_size(
    adapter,
    signal: torch.Tensor,
    models: Plan,
    precision: str,
    path: Path,
    embedding_precision: str | None = None,
) -> int:
    """Bytes of a file for this plan and precision, written with untrained weights.

    The weights are redrawn bell-shaped (Gaussian, at each tensor's initial spread): a fitted
    decoder's weights are, and their entropy-coded codes cost about 5% fewer bytes than the
    uniform initial weights' would.
    """
    decoder = build(models.decoder)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in decoder.parameters():
            if weight.dim() >= 2:
                spread = float(weight.std()) if weight.numel() > 1 else 1.0
                weight.copy_(torch.randn(weight.shape, generator=generator) * spread)
    latent = [s // models.total_stride for s in models.padded_shape]
    shape = (signal.shape[0], models.decoder["configuration"]["in_channels"], *latent)
    # noise, not zeros: a fitted embedding's compressed chunks are never smaller than this
    embedding = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    metadata = datum_metadata(
        modality=adapter.to_config(),
        signal_shape=tuple(signal.shape),
        loss=adapter.loss,
        decoder=decoder.to_config(),
        encoder=models.encoder,
        embedding_shape=embedding.shape,
        precision=precision,
        embedding_precision=embedding_precision,
        fit=FitRecord.placeholder(decoder.num_parameters()),
    )
    datum = NeuralDatum(metadata, decoder=decoder, embedding=embedding)
    datum.freeze_storage()
    datum.metadata = with_quality(datum.metadata, PLACEHOLDER_QUALITY)
    return datum.save(path)


def _embedding_choices(preset: Preset) -> list[Preset]:
    """The preset, and one per narrower embedding width it lets a budget choose."""
    narrower = [w for w in preset.budget_embedding_widths if w < preset.encoder_widths[-1]]
    return [preset] + [
        replace(preset, encoder_widths=(*preset.encoder_widths[:-1], width)) for width in narrower
    ]


def _payload_bits(models: Plan, precision: str, items: int) -> float:
    """Weight bits plus embedding bits (8 a number), tie-broken towards more parameters."""
    with torch.device("meta"):
        parameters = build(models.decoder).num_parameters()
    bits = int(precision[3:]) if precision.startswith("int") else 16
    latent = math.prod(s // models.total_stride for s in models.padded_shape)
    embedding = items * models.decoder["configuration"]["in_channels"] * latent * 8
    return parameters * bits + embedding + math.log2(parameters)
