"""Size control: a requested byte budget is never exceeded by the written file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.fitting.rate import lower_precisions

IMAGE = np.random.default_rng(0).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(budget=st.integers(min_value=2_000, max_value=200_000))
def test_written_file_never_exceeds_max_bytes(tmp_path_factory, budget):
    path = tmp_path_factory.mktemp("rate") / "budget.nrep"
    try:
        datum = neurep.fit(IMAGE, preset="fast", steps=1, progress=False, max_bytes=budget)
    except neurep.InputError as error:
        assert "too small" in str(error)
        return
    written = datum.save(path)
    assert written == path.stat().st_size <= budget
    assert datum.metadata["fit"]["budget_bytes"] == budget


def test_a_bigger_budget_buys_a_bigger_decoder():
    small = neurep.fit(IMAGE, preset="fast", steps=1, progress=False, max_bytes=12_000)
    large = neurep.fit(IMAGE, preset="fast", steps=1, progress=False, max_bytes=120_000)
    assert large.metadata["fit"]["decoder_parameters"] > small.metadata["fit"]["decoder_parameters"]


def test_bpp_is_converted_with_the_image_pixels(tmp_path):
    bpp = 4.0  # 4 bits for each of 24 x 40 pixels = 480 bytes: less than any file
    with pytest.raises(neurep.InputError, match="480 bytes"):
        neurep.fit(IMAGE, preset="fast", steps=1, progress=False, bpp=bpp)
    datum = neurep.fit(IMAGE, preset="fast", steps=1, progress=False, bpp=120.0)
    assert datum.save(tmp_path / "x.nrep") <= 120.0 * 24 * 40 / 8


def test_bpp_and_max_bytes_together_are_refused():
    with pytest.raises(neurep.InputError):
        neurep.fit(IMAGE, steps=1, progress=False, bpp=1.0, max_bytes=1000)


def test_psnr_target_stops_early_and_stores_int8():
    flat = np.full((32, 32), 100, dtype=np.uint8)
    datum = neurep.fit(flat, preset="fast", steps=200, progress=False, psnr=25.0)
    assert datum.metadata["weights"]["precision"] == "int8"
    assert datum.metadata["fit"]["steps"] < 200


def test_precision_fallbacks_go_down_the_ladder():
    assert lower_precisions("int8") == ["int6", "int5", "int4"]
    assert lower_precisions("int4") == []
