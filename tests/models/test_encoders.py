"""Encoders: output shapes, and the standardised embedding every encoder ends with."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from neurep.models import build
from neurep.models.encoders import (
    DEFAULT_EMBEDDING_SCALE,
    S3K_CHUNK_ELEMENTS,
    normalise_levels,
    standardise_embedding,
)
from neurep.models.pyramid import laplacian_pyramid
from neurep.nn.s3k import DT_INIT


def _per_channel(x: torch.Tensor) -> torch.Tensor:
    """(B, E, *s) -> (E, B * prod(s)): each channel's values over items and positions."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    spatial=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    scale=st.floats(0.5, 100.0),
    offset=st.floats(-1e3, 1e3),
    spread=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
# Two nearly equal values: the eps in the variance shows (a tolerance of 1e-4 once failed here).
@example(batch=1, channels=4, spatial=[], scale=1.0, offset=0.0, spread=0.00390625, seed=2)
def test_every_channel_has_zero_mean_and_rms_scale_over_items_and_positions(
    batch, channels, spatial, scale, offset, spread, seed
) -> None:
    if batch * math.prod(spatial) < 2:
        spatial = [*spatial, 2]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *spatial, generator=generator, dtype=torch.float64)
    inputs = x * spread + offset
    out = standardise_embedding(inputs, scale)
    values = _per_channel(out)
    assert out.shape == x.shape
    torch.testing.assert_close(
        values.mean(dim=1), torch.zeros(channels, dtype=x.dtype), atol=1e-6 * scale, rtol=0
    )
    rms = values.square().mean(dim=1).sqrt()
    # The variance carries an eps of 1e-12, so a near-constant channel comes out a bit short.
    variance = _per_channel(inputs).var(dim=1, unbiased=False)
    expected = scale * torch.sqrt(variance / (variance + 1e-12))
    torch.testing.assert_close(rms, expected, rtol=1e-6, atol=0)


def test_standardising_is_shift_and_scale_invariant_per_channel() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    shift = torch.tensor([1.0, -7.0, 30.0], dtype=torch.float64)[None, :, None, None]
    gain = torch.tensor([0.01, 3.0, 100.0], dtype=torch.float64)[None, :, None, None]
    torch.testing.assert_close(
        standardise_embedding(x * gain + shift, 8.0), standardise_embedding(x, 8.0)
    )


def test_constant_channel_becomes_zero_and_none_leaves_the_input_alone() -> None:
    x = torch.randn(1, 2, 3, 3)
    x[:, 1] = 5.0
    out = standardise_embedding(x, 4.0)
    assert torch.all(out[:, 1] == 0)
    assert torch.isfinite(out).all()
    assert standardise_embedding(x, None) is x


ENCODERS = [
    ("lpnet", {"projection": "s3k", "state_size": 4}),
    ("lpnet", {"projection": "s3k", "state_size": 4, "level_norm": True, "state_norm": True}),
    ("lpnet", {"projection": "conv"}),
    ("lpnet", {"projection": "conv", "level_norm": True}),
    ("convnext", {}),
]
ENCODER_IDS = ["lpnet-s3k", "lpnet-s3k-normed", "lpnet-conv", "lpnet-conv-normed", "convnext"]


@pytest.mark.parametrize("name,extra", ENCODERS, ids=ENCODER_IDS)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_encoders_return_standardised_embeddings_of_the_planned_shape(name, extra, ndim) -> None:
    torch.manual_seed(0)
    strides, widths = [4, 2], [8, 6]
    encoder = build(
        {
            "name": name,
            "configuration": {
                "ndim": ndim,
                "in_channels": 2,
                "strides": strides,
                "widths": widths,
                **extra,
            },
        }
    )
    spatial = [16, 24, 8][:ndim]
    x = torch.rand(2, 2, *spatial, requires_grad=True)
    z = encoder(x)
    assert z.shape == (2, widths[-1], *(s // 8 for s in spatial))
    values = _per_channel(z.detach())
    torch.testing.assert_close(values.mean(dim=1), torch.zeros(widths[-1]), atol=1e-3, rtol=0)
    rms = values.square().mean(dim=1).sqrt()
    torch.testing.assert_close(
        rms, torch.full_like(rms, DEFAULT_EMBEDDING_SCALE), rtol=1e-4, atol=0
    )
    z.square().mean().backward()  # gradients reach the input and every parameter
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in encoder.parameters())


def test_embedding_scale_none_keeps_the_raw_last_stage() -> None:
    torch.manual_seed(0)
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 2], "widths": [8, 4]}
    raw = build({"name": "convnext", "configuration": {**config, "embedding_scale": None}})
    scaled = build({"name": "convnext", "configuration": config})
    scaled.load_state_dict(raw.state_dict())
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(scaled(x), standardise_embedding(raw(x), DEFAULT_EMBEDDING_SCALE))


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    ndim=st.integers(1, 3),
    levels=st.integers(1, 3),
    gains=st.lists(st.floats(1e-3, 1e3), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_normalised_levels_have_unit_rms_per_item(batch, ndim, levels, gains, seed) -> None:
    """Every (B, C, *S_j) level comes out with RMS 1 for each item, whatever its own scale."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, *([8] * ndim), generator=generator, dtype=torch.float64)
    x = x * torch.tensor(gains[:batch], dtype=x.dtype).reshape(-1, *([1] * (ndim + 1)))
    pyramid = laplacian_pyramid(x, levels)
    for raw, level in zip(pyramid, normalise_levels(pyramid), strict=True):
        assert level.shape == raw.shape
        rms = level.flatten(1).square().mean(dim=1).sqrt()
        torch.testing.assert_close(rms, torch.ones(batch, dtype=x.dtype))
        # Only a positive factor per item: directions are kept.
        ratio = level.flatten(1) / raw.flatten(1)
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))


def test_a_flat_level_stays_zero() -> None:
    flat = torch.zeros(2, 3, 4, 4)
    (out,) = normalise_levels([flat])
    assert torch.equal(out, flat)


@pytest.mark.parametrize("projection", ["s3k", "conv"])
@pytest.mark.parametrize("gain", [0.01, 7.0])
def test_level_norm_makes_lpnet_blind_to_the_input_scale(projection, gain) -> None:
    """The pyramid is linear, so scaling the input scales every level; normalised levels, and
    so the embedding, do not change. Without level_norm the S3K embedding does change."""
    torch.manual_seed(0)
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 2], "widths": [8, 4]}
    config.update(projection=projection, level_norm=True)
    encoder = build({"name": "lpnet", "configuration": config}).double()
    x = torch.rand(1, 3, 16, 24, dtype=torch.float64) - 0.5
    torch.testing.assert_close(encoder(gain * x), encoder(x))
    plain = build({"name": "lpnet", "configuration": {**config, "level_norm": False}}).double()
    plain.load_state_dict(encoder.state_dict())
    if projection == "s3k":
        assert not torch.allclose(plain(gain * x), plain(x), atol=1e-6)


@pytest.mark.parametrize(
    "s3k_only", [{"state_norm": True}, {"window_span": [0.1, 10.0]}, {"hidden_channels": 8}]
)
def test_s3k_options_are_refused_for_convolutional_projections(s3k_only) -> None:
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 2], "widths": [8, 4]}
    with pytest.raises(ValueError, match="S3K projections only"):
        build({"name": "lpnet", "configuration": {**config, "projection": "conv", **s3k_only}})


def _initial_step_ranges(window_span) -> list[tuple[int, float, float]]:
    """(window, min dt, max dt) of each S3K projection of a fresh LPNet with strides [4, 4]
    (windows 4 and 8) and 64 states, so 128 step sizes per projection."""
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 4], "widths": [8, 4], "state_size": 64}
    torch.manual_seed(0)
    encoder = build({"name": "lpnet", "configuration": {**config, "window_span": window_span}})
    ranges = []
    for projection in encoder.projections:
        _, dt = projection.ssm_parameters()
        ranges.append((projection.kernel_size[0], dt.min().item(), dt.max().item()))
    return ranges


def _fills(low: float, high: float, drawn_min: float, drawn_max: float) -> bool:
    """Drawn steps lie in [low, high] and reach both ends' tenths of its log range."""
    tenth = math.exp(math.log(high / low) / 10)
    inside = drawn_min >= low * (1 - 1e-6) and drawn_max <= high * (1 + 1e-6)
    return inside and drawn_min < low * tenth and drawn_max > high / tenth


def test_lpnet_window_span_divides_by_each_levels_window() -> None:
    ranges = _initial_step_ranges([0.08, 8.0])
    assert [window for window, _, _ in ranges] == [4, 8]
    for window, drawn_min, drawn_max in ranges:
        assert _fills(0.08 / window, 8.0 / window, drawn_min, drawn_max)


def test_lpnet_without_window_span_keeps_the_layers_default_steps() -> None:
    for _, drawn_min, drawn_max in _initial_step_ranges(None):
        assert _fills(*DT_INIT, drawn_min, drawn_max)


def test_lpnet_takes_one_state_size_per_stage_or_one_for_all() -> None:
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 2, 2], "widths": [8, 8, 4]}
    per_stage = build({"name": "lpnet", "configuration": {**config, "state_size": [32, 8, 4]}})
    assert [p.state_size for p in per_stage.projections] == [32, 8, 4]
    assert [p.out_proj.weight.shape[1] for p in per_stage.projections] == [32, 8, 4]
    shared = build({"name": "lpnet", "configuration": {**config, "state_size": 6}})
    assert [p.state_size for p in shared.projections] == [6, 6, 6]
    out = per_stage(torch.rand(1, 3, 32, 48))
    assert out.shape == (1, 4, 2, 3)
    with pytest.raises(ValueError, match="state_size has 2 entries for 3 stages"):
        build({"name": "lpnet", "configuration": {**config, "state_size": [8, 8]}})


def test_lpnet_hidden_channels_widen_every_s3k_input_map() -> None:
    config = {"ndim": 2, "in_channels": 3, "strides": [4, 2], "widths": [8, 4]}
    default = build({"name": "lpnet", "configuration": config})
    assert [p.hidden_channels for p in default.projections] == [3, 3]
    wide = build({"name": "lpnet", "configuration": {**config, "hidden_channels": 16}})
    assert [p.hidden_channels for p in wide.projections] == [16, 16]
    assert [tuple(p.in_proj.weight.shape) for p in wide.projections] == [(16, 3), (16, 3)]
    per_stage = build({"name": "lpnet", "configuration": {**config, "hidden_channels": [12, 5]}})
    assert [p.hidden_channels for p in per_stage.projections] == [12, 5]
    # Chunks hold the same input rows whatever C, so a wide map does not start recomputing.
    assert [p.chunk_elements for p in default.projections] == [S3K_CHUNK_ELEMENTS] * 2
    assert [p.chunk_elements for p in wide.projections] == [S3K_CHUNK_ELEMENTS * 16 // 3] * 2
    assert per_stage(torch.rand(2, 3, 16, 24)).shape == (2, 4, 2, 3)
    with pytest.raises(ValueError, match="hidden_channels must be >= 1"):
        build({"name": "lpnet", "configuration": {**config, "hidden_channels": 0}})


@pytest.mark.parametrize("name,extra", ENCODERS, ids=ENCODER_IDS)
def test_forward_is_from_prepared_of_prepare_in_values_and_gradients(name, extra) -> None:
    torch.manual_seed(0)
    configuration = {"ndim": 2, "in_channels": 2, "strides": [4, 2], "widths": [8, 6]}
    encoder = build({"name": name, "configuration": {**configuration, **extra}})
    x = torch.rand(2, 2, 16, 24)
    direct = encoder(x)
    direct_grads = torch.autograd.grad(direct.square().sum(), list(encoder.parameters()))
    with torch.no_grad():  # prepare holds no parameters: nothing to differentiate
        prepared = encoder.prepare(x)
    split = encoder.from_prepared(prepared)
    split_grads = torch.autograd.grad(split.square().sum(), list(encoder.parameters()))
    torch.testing.assert_close(split, direct)
    for mine, theirs in zip(split_grads, direct_grads, strict=True):
        torch.testing.assert_close(mine, theirs)
    assert not any(
        p.requires_grad for p in (prepared if isinstance(prepared, list) else [prepared])
    )
