"""A byte budget's choice of precision and width: preferred precision, widest width that fits."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from neurep.api import prepare_fit
from neurep.fitting import rate

IMAGE = np.random.default_rng(0).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)


def _choose(max_bytes: int, precisions=rate.PRECISION_LADDER):
    prepared = prepare_fit(IMAGE, preset="fast", max_bytes=max_bytes)
    preset = prepared.preset.for_profile(prepared.adapter.preset_profile)
    preset = replace(preset, parameters_per_sample=None)
    return rate.choose_for_budget(
        preset, prepared.adapter, prepared.signal, max_bytes, precisions
    ), (preset, prepared)


def _size(preset, prepared, scale: float, precision: str, tmp_path) -> int:
    models = rate.plan(rate.scaled_preset(preset, scale), 3, (64, 96))
    return rate._dry_run_size(prepared.adapter, prepared.signal, models, precision, tmp_path)


def test_the_width_scales_fall_geometrically_from_the_full_width():
    scales = rate.WIDTH_SCALES
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(0.125)
    ratios = [a / b for a, b in itertools.pairwise(scales)]
    assert max(ratios) < 1.04 and min(ratios) > 1.02


@pytest.mark.parametrize("max_bytes", [9_000, 14_000, 30_000])
def test_the_chosen_width_is_the_widest_that_fits(tmp_path, max_bytes):
    chosen, (preset, prepared) = _choose(max_bytes)
    limit = max_bytes - min(rate.SIZE_MARGIN, max_bytes // 20)
    assert chosen.predicted_bytes <= limit
    index = rate.WIDTH_SCALES.index(chosen.width_scale)
    if chosen.precision != "int8" and index > 0:
        wider = rate.WIDTH_SCALES[index - 1]
        assert _size(preset, prepared, wider, chosen.precision, tmp_path / "w.nrep") > limit


def test_int8_only_at_full_width_else_int6_first(tmp_path):
    full_int8 = _size(*_choose(1 << 20)[1], 1.0, "int8", tmp_path / "a.nrep")
    roomy, _ = _choose(full_int8 + 1000)
    assert (roomy.precision, roomy.width_scale) == ("int8", 1.0)
    tight, _ = _choose(full_int8 - 2000)
    assert tight.precision == "int6"  # int8 is not tried below the full width


def test_a_precision_the_user_fixed_is_used_at_any_width():
    chosen, _ = _choose(9_000, ("int8",))
    assert chosen.precision == "int8" and chosen.width_scale < 1.0
