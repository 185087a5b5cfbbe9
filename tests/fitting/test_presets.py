"""Presets -> plans: which shapes each preset gives, per number of spatial dimensions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import neurep
from neurep.fitting import Preset, get_preset, plan
from neurep.fitting.rate import scaled_preset
from neurep.models import build

KODAK = (512, 768)


def image_plan(preset, channels=3, spatial=KODAK):
    """The plan an image of ``spatial`` gets: the preset's image profile applied."""
    return plan(preset.for_profile("image"), channels, spatial)


def array_plan(preset, spatial):
    """The plan a one-channel array of ``spatial`` gets, through the array adapter's profile."""
    adapter, _ = neurep.modalities.ArrayAdapter.from_object(np.zeros(spatial, np.float32))
    return plan(preset.for_profile(adapter.preset_profile), 1, spatial)


def test_paper_preset_is_table_a4_for_kodak() -> None:
    models = image_plan(get_preset("paper"))
    encoder = models.encoder["configuration"]
    assert encoder["strides"] == [32, 2, 2, 2]
    assert encoder["widths"] == [64, 64, 64, 16]
    assert encoder["state_size"] == 8
    assert "window_span" not in encoder  # the S3K layer's own step sizes
    assert encoder["hidden_channels"] == 6  # the paper leaves S3K's input map open
    assert models.preset.encoder_lr_scale == 0.3
    assert models.decoder["configuration"]["strides"] == [4, 4, 4, 2, 2]
    assert get_preset("paper").steps == 300 and get_preset("paper").learning_rate == 2e-2
    assert build(models.decoder).num_parameters() <= 160_000


def test_default_preset_gives_images_a_one_in_64_embedding_with_16_states() -> None:
    models = image_plan(get_preset("balanced"))
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
        a, b = image_plan(get_preset(s3k)), image_plan(get_preset(conv))
        assert a.total_stride == b.total_stride
        assert a.decoder == b.decoder
        assert b.encoder["configuration"]["projection"] == "conv"
        assert not b.encoder["configuration"]["state_norm"]
        assert "window_span" not in b.encoder["configuration"]
        assert "hidden_channels" not in b.encoder["configuration"]


@pytest.mark.parametrize("spatial", [(65536,), (64, 64, 64)])
def test_image_only_fields_leave_1d_and_3d_plans_alone(spatial) -> None:
    """balanced's 2-D shape (stride cap, decoder widths, states) must not reach other ranks."""
    balanced = array_plan(get_preset("balanced"), spatial)
    fast = array_plan(get_preset("fast"), spatial)
    assert balanced.encoder == fast.encoder
    assert balanced.decoder == fast.decoder


def test_small_images_still_get_a_valid_plan() -> None:
    models = image_plan(get_preset("balanced"), 1, (17, 33))
    assert all(p % models.total_stride == 0 for p in models.padded_shape)
    assert models.encoder["configuration"]["strides"][0] == 2


def test_scaling_a_preset_scales_the_image_decoder_too() -> None:
    half = scaled_preset(get_preset("balanced"), 0.5)
    assert half.profiles["image"]["decoder_widths"] == (48, 32, 12)
    assert half.decoder_widths == (48, 32, 12, 8)
    assert image_plan(half).decoder["configuration"]["widths"] == [48, 32, 12]
    long_signal = (1 << 20,)  # large enough that the capacity rule leaves the widths alone
    assert array_plan(half, long_signal).decoder["configuration"]["widths"] == [48, 32, 12, 8]


def test_images_fit_500_steps_at_3e_2_and_other_ranks_1100_at_2e_2() -> None:
    assert image_plan(get_preset("balanced")).preset.steps == 500
    assert image_plan(get_preset("balanced")).preset.learning_rate == 3e-2
    assert array_plan(get_preset("balanced"), (4096,)).preset.steps == 1100
    assert array_plan(get_preset("balanced"), (32, 32, 32)).preset.learning_rate == 2e-2


@pytest.mark.parametrize("name", ["balanced", "balanced-conv"])
def test_both_default_encoders_learn_images_at_0_3x_and_other_ranks_at_1x(name) -> None:
    assert image_plan(get_preset(name)).preset.encoder_lr_scale == 0.3
    assert array_plan(get_preset(name), (4096,)).preset.encoder_lr_scale == 1.0
    assert array_plan(get_preset(name), (32, 32, 32)).preset.encoder_lr_scale == 1.0
    paper = get_preset("paper")
    assert array_plan(paper, (4096,)).preset.encoder_lr_scale == 1.0  # Table A4 as written
    assert "hidden_channels" not in array_plan(paper, (32, 32, 32)).encoder["configuration"]
    assert image_plan(get_preset("paper-conv")).preset.encoder_lr_scale == 1.0


def test_explicit_overrides_win_over_the_image_settings() -> None:
    preset = get_preset("balanced").with_overrides(steps=30, learning_rate=1e-3)
    resolved = image_plan(preset).preset
    assert (resolved.steps, resolved.learning_rate) == (30, 1e-3)
    assert resolved.state_size == 16  # what was not overridden still applies


def test_the_api_fits_an_image_with_the_image_settings() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="balanced", steps=3, progress=False)
    assert datum.metadata["fit"]["steps"] == 3
    assert datum.metadata["fit"]["learning_rate"] == 3e-2
    assert datum.metadata["fit"]["encoder_lr_scale"] == 0.3
    assert datum.metadata["encoder"]["configuration"]["state_size"] == 16


@pytest.mark.parametrize(("side", "first"), [(8, 2), (16, 4), (32, 4), (128, 4)])
def test_volumes_take_a_first_stride_of_2_or_4_and_32_states(side, first) -> None:
    models = array_plan(get_preset("balanced"), (side, side, side))
    encoder = models.encoder["configuration"]
    assert encoder["strides"][0] == first and encoder["state_size"] == 32
    assert side // first >= 4 or first == 2


def test_a_2d_array_is_fitted_as_a_one_channel_image() -> None:
    as_array = array_plan(get_preset("balanced"), (64, 96))
    as_image = image_plan(get_preset("balanced"), 1, (64, 96))
    assert as_array.encoder == as_image.encoder and as_array.decoder == as_image.decoder
    assert as_array.preset.steps == 500


def test_a_profile_setting_must_name_a_preset_field() -> None:
    with pytest.raises(ValueError, match="unknown"):
        Preset("mine", 10, 1e-2, profiles={"image": {"stpes": 5}})


def test_a_preset_object_is_fitted_as_given() -> None:
    mine = Preset("mine", 4, 1e-2, decoder_widths=(8, 8, 8, 8), profiles={"image": {"steps": 2}})
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset=mine, progress=False)
    assert datum.metadata["fit"]["preset"] == "mine"
    assert datum.metadata["fit"]["steps"] == 2  # the image profile applied
    assert datum.metadata["decoder"]["configuration"]["widths"] == [8, 8, 8]


@pytest.mark.parametrize("side", [16, 64, 256, 512])
def test_the_decoder_follows_the_image_size_with_a_floor(side) -> None:
    models = image_plan(get_preset("balanced"), 3, (side, side))
    parameters = build(models.decoder).num_parameters()
    allowed = max(4000, math.floor(0.335 * side * side))
    assert parameters <= allowed
    full = build(
        plan(
            replace(get_preset("balanced").for_profile("image"), parameters_per_sample=None),
            3,
            (side, side),
        ).decoder
    )
    assert parameters == full.num_parameters() or models.width_scale < 1
    # the largest scale that fits: one step wider (1/256) would not
    if models.width_scale < 1:
        wider = [
            max(2, round(w * (models.width_scale + 1 / 256)))
            for w in full.to_config()["configuration"]["widths"]
        ]
        config = {
            **models.decoder,
            "configuration": {**models.decoder["configuration"], "widths": wider},
        }
        assert build(config).num_parameters() > allowed


def test_a_kodak_image_keeps_the_full_default_decoder() -> None:
    models = image_plan(get_preset("balanced"))
    assert models.width_scale == 1.0
    assert build(models.decoder).num_parameters() == 131_339


def test_the_paper_presets_keep_the_papers_network_at_every_size() -> None:
    small = image_plan(get_preset("paper"), 3, (64, 64))
    assert small.width_scale == 1.0 and get_preset("paper").parameters_per_sample is None


def test_the_file_records_the_capacity_rule_and_int8_is_the_default() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=2, progress=False)
    capacity = datum.metadata["fit"]["capacity"]
    assert capacity["parameters_per_sample"] == 0.335
    assert capacity["min_decoder_parameters"] == 4000
    assert 0 < capacity["width_scale"] < 1
    assert datum.metadata["fit"]["decoder_parameters"] <= 4000
    assert datum.metadata["weights"]["precision"] == "int8"
    assert datum.metadata["embedding"]["precision"] == "int8"


def test_a_byte_budget_sizes_the_decoder_instead_of_the_capacity_rule() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=1, progress=False, max_bytes=60_000)
    assert "capacity" not in datum.metadata["fit"]
    assert datum.metadata["fit"]["decoder_parameters"] > 4000
