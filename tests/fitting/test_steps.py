"""Per-channel quantisation steps chosen by output sensitivity and measured PSNR
(``neurep.fitting.steps``), and the quantiser's coarser steps
(``quantize_tensors(..., step_scales=...)``)."""

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


def test_per_channel_factors_coarsen_each_channel_by_its_own():
    spreads = torch.logspace(-2, 1, 16)[:, None]  # rows this different are coded per channel
    weight = torch.randn(16, 256, generator=torch.Generator().manual_seed(1)) * spreads
    _, info = quantize_tensors({"w": weight}, "int8")
    entry = info["tensors"]["w"]
    assert entry["granularity"] == "channel"
    channels = weight.shape[entry["axis"]]
    factors = np.linspace(1.0, 6.0, channels)
    coarse, _ = quantize_tensors({"w": weight}, "int8", {"w": factors})
    codes = np.moveaxis(coarse["w"].numpy().reshape(weight.shape), entry["axis"], 0)
    spans = codes.reshape(channels, -1).max(axis=1) - codes.reshape(channels, -1).min(axis=1)
    assert np.all(spans <= np.ceil(255 / factors) + 1)
    assert spans[0] == 255 and spans[-1] < 255 // 4


def test_per_channel_factors_of_the_wrong_length_are_refused():
    spreads = torch.logspace(-2, 1, 16)[:, None]
    weight = torch.randn(16, 256, generator=torch.Generator().manual_seed(1)) * spreads
    with pytest.raises(ValueError, match="16 step scales for 1"):
        quantize_tensors({"w": torch.randn(8, 8)}, "int8", {"w": np.full(16, 2.0)})
    with pytest.raises(ValueError, match="5 step scales for 16"):
        quantize_tensors({"w": weight}, "int8", {"w": np.full(5, 2.0)})
    with pytest.raises(ValueError, match="at least 1"):
        quantize_tensors({"w": weight}, "int8", {"w": np.r_[2.0, 0.5, np.ones(14)]})
    with pytest.raises(ValueError, match="at least 1"):
        quantize_tensors({"w": weight}, "int8", {"w": np.r_[np.inf, np.ones(15)]})


def test_sensitivity_estimates_the_gauss_newton_diagonal_of_a_linear_decoder(monkeypatch):
    # y = W e (a 1x1 convolution): d y[o, p] / d W[o, i] = e[i, p], so diag(J^T J) is
    # sum_p e[i, p]**2 for every output o; the output is cropped to the signal's 4 x 6.
    monkeypatch.setattr("neurep.formats.quantize.MIN_QUANT_NUMEL", 0)
    decoder = torch.nn.Conv2d(3, 4, 1, bias=False)
    embedding = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    expected = (embedding[:, :, :4, :6] ** 2).sum(dim=(0, 2, 3))  # (3,)
    estimate = steps.output_sensitivity(decoder, embedding, (4, 6), probes=4000)["weight"]
    assert estimate.shape == decoder.weight.shape
    ratio = estimate[:, :, 0, 0] / expected[None, :]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.12)
    repeated = steps.output_sensitivity(decoder, embedding, (4, 6), probes=4000)["weight"]
    assert torch.equal(estimate, repeated)  # seeded: the same choice on every run
    monkeypatch.setattr(steps, "_PROBE_ELEMENTS", 4 * 4 * 6)  # one item a chunk
    chunked = steps.output_sensitivity(decoder, embedding, (4, 6), probes=8000)["weight"]
    ratio = chunked[:, :, 0, 0] / expected[None, :]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.12)


def test_factors_follow_the_inverse_root_of_sensitivity():
    units = {"a": (np.asarray([1.0, 2.0, 4.0, 0.0]), True), "b": (np.asarray([8.0]), False)}
    scales = steps._scales_at(units, 4.0)
    assert np.allclose(scales["a"], [4.0, 2.0, 1.0, steps.MAX_FACTOR])
    assert "b" not in scales  # t below its unit: min-max steps
    assert steps._scales_at(units, 1e9)["b"] == steps.MAX_FACTOR


def test_chosen_steps_keep_quality_within_budget_and_never_grow_the_file(tmp_path, monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    tried: list = []
    original = steps.choose_steps

    def spying(stored_with, state, sensitivity, precision, budget_db=steps.DEFAULT_BUDGET_DB):
        def recording(scales):
            tried.append(scales)
            return stored_with(scales)

        result = original(recording, state, sensitivity, precision, budget_db)
        spying.base = stored_with(None)
        return result

    monkeypatch.setattr("neurep.fitting.pipeline.choose_steps", spying)
    monkeypatch.setattr(steps, "MIN_WEIGHTS", 0)  # this tiny decoder would keep min-max steps
    datum = neurep.fit(image, preset="fast", steps=40, progress=False)
    base = spying.base
    assert tried[0] is None and len(tried) == 1 + steps.BISECTION_ROUNDS
    assert any(scale for scale in tried[1:])  # candidates with coarser steps were measured
    assert (
        datum.metadata["quality"]["psnr"]
        >= base.metadata["quality"]["psnr"] - steps.DEFAULT_BUDGET_DB - 1e-9
    )
    assert datum.save(tmp_path / "chosen.nrep") <= base.save(tmp_path / "base.nrep")
    reloaded = neurep.load(tmp_path / "chosen.nrep")
    assert np.array_equal(reloaded.decode(), datum.decode())


def test_a_small_decoder_keeps_min_max_steps_without_measuring_sensitivity(monkeypatch):
    def refusing(*args, **kwargs):
        raise AssertionError("sensitivity measured for a decoder below MIN_WEIGHTS")

    monkeypatch.setattr("neurep.fitting.pipeline.output_sensitivity", refusing)
    monkeypatch.setattr(steps, "MIN_WEIGHTS", 10**9)
    image = np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=10, progress=False)
    assert datum.step_scales is None


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
