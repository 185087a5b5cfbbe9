"""Rate control: the decoder's width and precision that keep the file within a byte budget.

The size that counts is the written ``.nrep`` file. Before fitting, each candidate (a width
scale of the preset's decoder and a weight precision) is sized exactly by writing a dry-run
file with the candidate's real shapes and metadata (weights are untrained, but quantised
sizes depend only on shapes). The largest candidate that fits, with a small margin for the
parts that depend on the fitted values (JSON number lengths, the embedding's zstd chunk), is
fitted; afterwards :func:`store_within` checks the real file and, if it is still over, lowers
the precision of the fitted weights until it fits (no refit needed).
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

#: Weight precisions tried for a budget, best quality per byte first (HNeRV habit: 8 bits).
PRECISION_LADDER = ("int8", "int6", "int5", "int4")
#: Width multipliers of the preset's decoder, largest first. Never wider than the preset: a
#: wider decoder at fewer bits trained worse in the same steps (RESULTS.md, "Rate").
WIDTH_SCALES = (1.0, 0.75, 0.5, 0.375, 0.25, 0.125)
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
    """The largest (embedding width, decoder width, precision) whose dry-run file is at most
    ``max_bytes - margin``.

    Candidates are ranked by their payload, weight bits (parameters x bits) plus embedding
    bits, so a wider decoder at fewer bits wins over a narrow one at more bits when it fits;
    narrower embeddings are candidates only where the preset lists them. ``preset`` is already
    specialised to the datum's profile; ``signal`` is (B, C, *S); ``embedding_precision``
    is the one the datum will be stored at (None: the default for each weight precision).

    Raises:
        InputError: not even the smallest candidate fits; the message gives its size.
    """
    limit = max_bytes - min(SIZE_MARGIN, max_bytes // 20)
    items, channels, spatial = signal.shape[0], signal.shape[1], tuple(signal.shape[2:])
    candidates = [
        (scale, scaled, plan(scaled, channels, spatial, items=items), precision)
        for embedding in _embedding_choices(preset)
        for scale in WIDTH_SCALES
        for scaled in (scaled_preset(embedding, scale),)
        for precision in precisions
    ]
    # largest payload first (weights, then embedding, bits); the first that fits wins
    candidates.sort(key=lambda c: -_payload_bits(c[2], c[3], items))
    smallest = None
    with tempfile.TemporaryDirectory() as workdir:
        for scale, scaled, models, precision in candidates:
            size = _dry_run_size(
                adapter, signal, models, precision, Path(workdir) / "dry.nrep", embedding_precision
            )
            smallest = size if smallest is None else min(smallest, size)
            if size <= limit:
                return Candidate(scaled, models, precision, scale, size)
    raise InputError(
        f"a budget of {max_bytes} bytes is too small: the smallest neural datum for this input "
        f"needs about {smallest + SIZE_MARGIN} bytes (decoder width x{WIDTH_SCALES[-1]}, "
        f"{precisions[-1]} weights)"
    )


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
    """Bytes of a file for this plan and precision, written with untrained weights."""
    decoder = build(models.decoder)
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
