"""Round and refit: storage finds the rounded weights exactly, and the refit only helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurep.fitting import get_preset, plan
from neurep.fitting.loop import as_unit, fit_signal
from neurep.fitting.qat import FakeQuantiser
from neurep.fitting.refit import round_and_refit
from neurep.formats.quantize import dequantize_tensors, quantize_tensors
from neurep.models import build

IMAGE = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 3, 32, 48), np.uint8))


@pytest.fixture(scope="module")
def fitted():
    models = plan(get_preset("fast").for_profile("image"), 3, (32, 48))
    return fit_signal(IMAGE, models, steps=40, progress=False)


def _stored(decoder: torch.nn.Module, precision: str) -> torch.nn.Module:
    state = decoder.state_dict()
    stored, qinfo = quantize_tensors(state, precision)
    values = dequantize_tensors(stored, qinfo, state)
    rounded = build(decoder.to_config())
    rounded.load_state_dict(values)
    return rounded.eval()


def _mse(decoder: torch.nn.Module, embedding: torch.Tensor) -> float:
    with torch.no_grad():
        out = decoder(embedding)[..., :32, :48].clamp(0, 1)
    return float(torch.mean((out - as_unit(IMAGE)) ** 2))


@pytest.mark.parametrize("precision", ["int4", "int6"])
def test_refitted_weights_are_stored_exactly_and_decode_better(fitted, precision):
    before = {k: v.clone() for k, v in fitted.decoder.state_dict().items()}
    refitted = round_and_refit(fitted, IMAGE, precision)
    for name, value in fitted.decoder.state_dict().items():  # the input is left alone
        assert torch.equal(value, before[name])
    state = refitted.decoder.state_dict()
    stored = _stored(refitted.decoder, precision).state_dict()
    grids = FakeQuantiser.for_decoder(refitted.decoder, precision).grids
    assert grids
    for name in grids:
        tolerance = 1e-5 * float(state[name].abs().max())
        torch.testing.assert_close(stored[name], state[name], rtol=0, atol=tolerance)
    plain = _mse(_stored(fitted.decoder, precision), fitted.embedding)
    refit = _mse(_stored(refitted.decoder, precision), refitted.embedding)
    assert refit < plain


def test_only_one_item_signals_are_refitted(fitted):
    with pytest.raises(ValueError, match="one item"):
        round_and_refit(fitted, IMAGE.expand(2, -1, -1, -1), "int6")
