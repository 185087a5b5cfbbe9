"""Rate control: pick the decoder's width and precision so the file fits a byte budget.

The size that counts is the written ``.nrep`` file. Before fitting, each candidate (a width
scale of the preset's decoder and a weight precision) is sized exactly by writing a dry-run
file with the candidate's real shapes and metadata (weights are random, but quantised sizes
depend only on shapes). The largest candidate that fits, with a small margin for the parts
that depend on the fitted values (JSON number lengths, the embedding's zstd chunk), is
fitted; afterwards :func:`neurep.api.fit` checks the real file and, if it is still over,
lowers the precision of the fitted weights until it fits (no refit needed).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from neurep.errors import InputError
from neurep.fitting.presets import Plan, Preset, plan

__all__ = [
    "PRECISION_LADDER",
    "WIDTH_SCALES",
    "Candidate",
    "choose_for_budget",
    "lower_precisions",
]

#: Weight precisions tried for a budget, best quality per byte first (HNeRV habit: 8 bits).
PRECISION_LADDER = ("int8", "int6", "int5", "int4")
#: Width multipliers of the preset's decoder, largest first. Never wider than the preset: a
#: wider decoder trains worse in the same steps, and its extra parameters only fit a budget at
#: fewer bits. At 4 bpp on kodim01-03 (default preset), x1.5 at int4 gave 24.1 dB, against
#: 28.4 dB for x0.75 at int8 at 2 bpp; capped at x1.0 it picks int8 there and gives 30.8 dB
#: (benchmarks/results/rd_kodak_balanced_3.json).
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


def scaled_preset(preset: Preset, scale: float) -> Preset:
    """The preset with every decoder width multiplied by ``scale`` (at least 2 channels)."""

    def scaled(widths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(2, round(w * scale)) for w in widths)

    images = dict(preset.image_overrides)
    if "decoder_widths" in images:
        images["decoder_widths"] = scaled(images["decoder_widths"])
    return replace(preset, decoder_widths=scaled(preset.decoder_widths), image_overrides=images)


def lower_precisions(precision: str) -> list[str]:
    """The precisions below ``precision`` on the ladder, to fall back to after fitting."""
    if precision not in PRECISION_LADDER:
        return list(PRECISION_LADDER)
    return list(PRECISION_LADDER[PRECISION_LADDER.index(precision) + 1 :])


def choose_for_budget(
    preset: Preset,
    channels: int,
    spatial: tuple[int, ...],
    max_bytes: int,
    dry_run_size: Callable[[Plan, str, Path], int],
    precisions: tuple[str, ...] = PRECISION_LADDER,
) -> Candidate:
    """The largest (width, precision) whose dry-run file is at most ``max_bytes - margin``.

    Candidates are ranked by bits spent on weights (parameters x bits), so a wider decoder at
    fewer bits wins over a narrow one at more bits when it fits.

    Args:
        dry_run_size: writes a file for (plan, precision) at the given path, returns its bytes.

    Raises:
        InputError: not even the smallest candidate fits; the message gives its size.
    """
    limit = max_bytes - min(SIZE_MARGIN, max_bytes // 20)
    smallest = None
    candidates = []
    for scale in WIDTH_SCALES:
        scaled = scaled_preset(preset, scale)
        models = plan(scaled, channels, spatial)
        for precision in precisions:
            candidates.append((scale, scaled, models, precision))
    # Try in order of weight bits, largest first; the first that fits wins.
    candidates.sort(key=lambda c: -_weight_bits(c[2], c[3]))
    with tempfile.TemporaryDirectory() as workdir:
        for scale, scaled, models, precision in candidates:
            size = dry_run_size(models, precision, Path(workdir) / "dry-run.nrep")
            if smallest is None or size < smallest:
                smallest = size
            if size <= limit:
                return Candidate(scaled, models, precision, scale, size)
    raise InputError(
        f"a budget of {max_bytes} bytes is too small: the smallest neural datum for this input "
        f"needs about {smallest + SIZE_MARGIN} bytes (decoder width x{WIDTH_SCALES[-1]}, "
        f"{precisions[-1]} weights)"
    )


def _weight_bits(models: Plan, precision: str) -> float:
    from neurep.models import build

    parameters = build(models.decoder).num_parameters()
    bits = int(precision[3:]) if precision.startswith("int") else 16
    return parameters * bits + math.log2(parameters)  # tie-break towards more parameters
