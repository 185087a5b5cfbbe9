"""Per-tensor quantisation steps chosen by measured PSNR (``neurep.fitting.steps``) and the
quantiser's coarser steps (``quantize_tensors(..., step_scales=...)``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neurep
from neurep.fitting import steps
from neurep.formats.quantize import dequantize_tensors, quantize_tensors


@pytest.mark.parametrize("factor", [1.5, 2.0, 4.0])
def test_a_coarser_step_uses_fewer_levels_and_bounds_the_error(factor):
    weight = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    plain, plain_info = quantize_tensors({"w": weight}, "int8")
    coarse, coarse_info = quantize_tensors({"w": weight}, "int8", {"w": factor})
    assert int(coarse["w"].max()) <= int(np.ceil(255 / factor))
    entry = coarse_info["tensors"]["w"]
    params = coarse["__qparams__"].numpy()
    channels = weight.shape[entry["axis"]] if entry["granularity"] == "channel" else 1
    scale = params[entry["params"] : entry["params"] + channels].max()
    error = (dequantize_tensors(coarse, coarse_info)["w"] - weight).abs().max()
    assert float(error) <= scale / 2 * (1 + 1e-5)
    plain_error = (dequantize_tensors(plain, plain_info)["w"] - weight).abs().max()
    assert error >= plain_error


def test_a_step_scale_under_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        quantize_tensors({"w": torch.randn(8, 8)}, "int8", {"w": 0.5})


def test_coarsening_keeps_quality_within_budget_and_never_grows_the_file(tmp_path, monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    tried: list[dict | None] = []
    original = steps.coarsen_steps

    def spying(stored_with, budget_db=steps.DEFAULT_BUDGET_DB):
        def recording(scales):
            tried.append(scales)
            return stored_with(scales)

        result = original(recording, budget_db)
        spying.base = stored_with(None)
        return result

    monkeypatch.setattr("neurep.fitting.pipeline.coarsen_steps", spying)
    monkeypatch.setattr(steps, "MIN_WEIGHTS", 0)  # this tiny decoder would keep min-max steps
    datum = neurep.fit(image, preset="fast", steps=40, progress=False)
    base = spying.base
    assert tried[0] is None and len(tried) > 1  # the min-max store, then coarser candidates
    assert (
        datum.metadata["quality"]["psnr"]
        >= base.metadata["quality"]["psnr"] - steps.DEFAULT_BUDGET_DB - 1e-9
    )
    assert datum.save(tmp_path / "chosen.nrep") <= base.save(tmp_path / "base.nrep")
    reloaded = neurep.load(tmp_path / "chosen.nrep")
    assert np.array_equal(reloaded.decode(), datum.decode())


def test_candidates_are_measured_by_psnr_alone_and_the_chosen_one_fully(monkeypatch):
    from neurep.modalities.base import ModalityAdapter

    calls = {"measure": 0, "measure_psnr": 0}
    for name in calls:
        original = getattr(ModalityAdapter, name)

        def counting(self, *args, _original=original, _name=name):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(ModalityAdapter, name, counting)
    monkeypatch.setattr(steps, "MIN_WEIGHTS", 0)
    image = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=20, progress=False)
    assert calls["measure"] == 1 and calls["measure_psnr"] > 1
    quality = datum.metadata["quality"]
    assert quality["ms_ssim"] is not None
    assert quality["psnr"] == pytest.approx(
        ModalityAdapter.measure_psnr(datum.adapter, image, datum), abs=1e-9
    )
