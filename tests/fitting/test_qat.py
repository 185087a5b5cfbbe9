"""Quantisation-aware final steps: what the last steps train with is what the file stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurep.fitting import get_preset, plan
from neurep.fitting.loop import fit_signal
from neurep.fitting.qat import QAT_FRACTION, FakeQuantiser, quantisation_aware_steps
from neurep.formats.quantize import dequantize_tensors, quantize_tensors


class _Weights(torch.nn.Module):
    def __init__(self, shapes: list[tuple[int, ...]], seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(*shape, generator=generator)) for shape in shapes
        )
        self.bias = torch.nn.Parameter(torch.randn(shapes[0][0], generator=generator))


def _stored_values(module: torch.nn.Module, precision: str) -> dict[str, torch.Tensor]:
    state = module.state_dict()
    stored, qinfo = quantize_tensors(state, precision)
    return dequantize_tensors(stored, qinfo, state)


shapes = st.lists(
    st.tuples(st.integers(2, 12), st.integers(2, 12), st.sampled_from([1, 2, 3])),
    min_size=1,
    max_size=3,
)


@settings(max_examples=25, deadline=None)
@given(shapes=shapes, bits=st.integers(4, 8), seed=st.integers(0, 2**16), drift=st.floats(0, 0.5))
def test_snapped_weights_are_stored_exactly(shapes, bits, seed, drift):
    module = _Weights(shapes, seed)
    quantiser = FakeQuantiser.for_decoder(module, f"int{bits}")
    with torch.no_grad():  # the weights move after the grids are fixed, as in training
        for p in module.parameters():
            p.add_(drift * torch.randn_like(p))
    quantiser.snap_(module)
    stored = _stored_values(module, f"int{bits}")
    for name, value in module.state_dict().items():
        if name in quantiser.grids:
            torch.testing.assert_close(stored[name], value, rtol=0, atol=1e-5 * value.abs().max())


def test_forward_reads_grid_values_and_the_gradient_passes_straight_through():
    module = _Weights([(6, 5, 3)], seed=1)
    quantiser = FakeQuantiser.for_decoder(module, "int4")
    weight = module.weights[0]
    rounded = quantiser({"weights.0": weight})["weights.0"]
    grid = quantiser.grids["weights.0"]
    codes = (grid.rows(rounded.detach()) - grid.low) / grid.step
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.round().unique().numel() <= 16
    assert not torch.equal(rounded.detach(), weight.detach())  # it did round
    (rounded * torch.arange(weight.numel()).reshape(weight.shape)).sum().backward()
    assert torch.equal(weight.grad, torch.arange(weight.numel()).reshape(weight.shape).float())


def test_vectors_and_small_tensors_are_not_rounded():
    module = _Weights([(4, 3, 1)], seed=2)  # 12 elements: stored as float16, not affine
    quantiser = FakeQuantiser.for_decoder(module, "int4")
    assert quantiser.grids == {}
    parameters = dict(module.named_parameters())
    assert all(quantiser(parameters)[n] is p for n, p in parameters.items())


def test_quantised_steps_only_for_integer_precisions():
    assert quantisation_aware_steps(500, "int4") == int(500 * QAT_FRACTION) > 0
    assert quantisation_aware_steps(500, "int6") == 0  # rounded after the fit: measured better
    assert quantisation_aware_steps(500, "float16") == 0
    assert quantisation_aware_steps(500, None) == 0
    assert quantisation_aware_steps(5, "int4") == 0
    with pytest.raises(ValueError):
        FakeQuantiser.for_decoder(_Weights([(8, 8, 1)], 0), "float32")


def test_a_quantisation_aware_fit_stores_the_weights_it_ended_with():
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32), np.uint8))
    models = plan(get_preset("fast").for_profile("image"), 3, (32, 32))
    result = fit_signal(image, models, steps=20, progress=False, quantise_as="int4")
    decoder = result.decoder
    stored = _stored_values(decoder, "int4")
    affine = FakeQuantiser.for_decoder(decoder, "int4").grids
    assert affine, "the fast preset's decoder has affine-coded weights"
    for name in affine:
        value = decoder.state_dict()[name]
        torch.testing.assert_close(stored[name], value, rtol=0, atol=1e-5 * value.abs().max())
    # without the quantised phase the same fit's weights are off the int4 grid
    plain = fit_signal(image, models, steps=20, progress=False)
    plain_stored = _stored_values(plain.decoder, "int4")
    assert any(
        not torch.allclose(plain_stored[n], plain.decoder.state_dict()[n], atol=1e-4)
        for n in affine
    )


@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_snapped_weights_at_a_step_scale_are_stored_as_snapped(factor):
    module = _Weights([(8, 6, 3)], seed=5)
    quantiser = FakeQuantiser.for_decoder(module, "int8", {"weights.0": factor})
    quantiser.snap_(module)
    state = module.state_dict()
    stored, qinfo = quantize_tensors(state, "int8", {"weights.0": factor})
    values = dequantize_tensors(stored, qinfo, state)["weights.0"]
    weight = state["weights.0"]
    grid = quantiser.grids["weights.0"]
    error = (values - weight).abs()
    coarse_step = float(grid.step.max())
    # every weight is a grid point but the top of the range, which is one only when 255 /
    # factor is whole and the float16 step is exactly factor times the base step; storage
    # rounds that one weight by at most half a step
    off = error > 1e-5 * float(weight.abs().max())
    assert int(off.sum()) <= 1
    top = grid.unrows(grid.rows(torch.zeros_like(weight)).scatter_(1, grid.argmax, 1.0), weight)
    assert bool((off <= top.bool()).all())  # if one is off, it is the pinned top
    assert float(error.max()) <= coarse_step / 2 + 1e-6
