"""Presets -> plans: which shapes each preset gives, per number of spatial dimensions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import neurep
from neurep.fitting import get_preset, plan
from neurep.fitting.rate import scaled_preset
from neurep.models import build

KODAK = (512, 768)


def test_paper_preset_is_table_a4_for_kodak() -> None:
    models = plan(get_preset("paper"), 3, KODAK)
    encoder = models.encoder["configuration"]
    assert encoder["strides"] == [32, 2, 2, 2]
    assert encoder["widths"] == [64, 64, 64, 16]
    assert encoder["state_size"] == 8
    assert "window_span" not in encoder  # the S3K layer's own step sizes
    assert encoder["hidden_channels"] == 16  # the paper leaves S3K's input map open
    assert models.preset.encoder_lr_scale == 0.3
    assert models.decoder["configuration"]["strides"] == [4, 4, 4, 2, 2]
    assert get_preset("paper").steps == 300 and get_preset("paper").learning_rate == 2e-2
    assert build(models.decoder).num_parameters() <= 160_000


def test_default_preset_gives_images_a_one_in_64_embedding_with_16_states() -> None:
    models = plan(get_preset("balanced"), 3, KODAK)
    encoder = models.encoder["configuration"]
    assert math.prod(encoder["strides"]) == 64 and encoder["strides"][0] == 8
    assert encoder["state_size"] == 16
    assert encoder["level_norm"] and encoder["state_norm"]
    assert encoder["window_span"] == [0.08, 8.0]
    assert models.decoder["configuration"]["strides"] == [4, 4, 2, 2]
    assert build(models.decoder).num_parameters() == 131_339
    z_shape = [s // models.total_stride for s in KODAK]
    assert z_shape == [8, 12]


def test_the_conv_baseline_has_the_same_total_stride_and_decoder_as_s3k() -> None:
    for s3k, conv in (("balanced", "balanced-conv"), ("paper", "paper-conv")):
        a, b = plan(get_preset(s3k), 3, KODAK), plan(get_preset(conv), 3, KODAK)
        assert a.total_stride == b.total_stride
        assert a.decoder == b.decoder
        assert b.encoder["configuration"]["projection"] == "conv"
        assert not b.encoder["configuration"]["state_norm"]
        assert "window_span" not in b.encoder["configuration"]
        assert "hidden_channels" not in b.encoder["configuration"]


@pytest.mark.parametrize("spatial", [(65536,), (64, 64, 64)])
def test_image_only_fields_leave_1d_and_3d_plans_alone(spatial) -> None:
    """balanced's 2-D shape (stride cap, decoder widths, states) must not reach other ranks."""
    balanced = plan(get_preset("balanced"), 1, spatial)
    fast = plan(get_preset("fast"), 1, spatial)
    assert balanced.encoder == fast.encoder
    assert balanced.decoder == fast.decoder


def test_small_images_still_get_a_valid_plan() -> None:
    models = plan(get_preset("balanced"), 1, (17, 33))
    assert all(p % models.total_stride == 0 for p in models.padded_shape)
    assert models.encoder["configuration"]["strides"][0] == 2


def test_scaling_a_preset_scales_the_image_decoder_too() -> None:
    half = scaled_preset(get_preset("balanced"), 0.5)
    assert half.image_overrides["decoder_widths"] == (48, 32, 12)
    assert half.decoder_widths == (48, 32, 12, 8)
    assert plan(half, 3, KODAK).decoder["configuration"]["widths"] == [48, 32, 12]
    assert plan(half, 1, (4096,)).decoder["configuration"]["widths"] == [48, 32, 12, 8]


def test_images_fit_500_steps_at_3e_2_and_other_ranks_1100_at_2e_2() -> None:
    assert plan(get_preset("balanced"), 3, KODAK).preset.steps == 500
    assert plan(get_preset("balanced"), 3, KODAK).preset.learning_rate == 3e-2
    assert plan(get_preset("balanced"), 1, (4096,)).preset.steps == 1100
    assert plan(get_preset("balanced"), 1, (32, 32, 32)).preset.learning_rate == 2e-2


@pytest.mark.parametrize("name", ["balanced", "balanced-conv"])
def test_both_default_encoders_learn_images_at_0_3x_and_other_ranks_at_1x(name) -> None:
    assert plan(get_preset(name), 3, KODAK).preset.encoder_lr_scale == 0.3
    assert plan(get_preset(name), 1, (4096,)).preset.encoder_lr_scale == 1.0
    assert plan(get_preset(name), 1, (32, 32, 32)).preset.encoder_lr_scale == 1.0
    paper = get_preset("paper")
    assert plan(paper, 1, (4096,)).preset.encoder_lr_scale == 1.0  # Table A4 as written
    assert "hidden_channels" not in plan(paper, 1, (32, 32, 32)).encoder["configuration"]
    assert plan(get_preset("paper-conv"), 3, KODAK).preset.encoder_lr_scale == 1.0


def test_explicit_overrides_win_over_the_image_settings() -> None:
    preset = get_preset("balanced").with_overrides(steps=30, learning_rate=1e-3)
    resolved = plan(preset, 3, KODAK).preset
    assert (resolved.steps, resolved.learning_rate) == (30, 1e-3)
    assert resolved.state_size == 16  # what was not overridden still applies


def test_the_api_fits_an_image_with_the_image_settings() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="balanced", steps=3, progress=False)
    assert datum.metadata["fit"]["steps"] == 3
    assert datum.metadata["fit"]["learning_rate"] == 3e-2
    assert datum.metadata["fit"]["encoder_lr_scale"] == 0.3
    assert datum.metadata["encoder"]["configuration"]["state_size"] == 16
