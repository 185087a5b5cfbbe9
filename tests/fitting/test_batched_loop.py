"""Batched fits (video frames): uint8 signals, epochs of item batches, per-item embeddings."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from neurep.fitting import fit_signal, get_preset, plan
from neurep.fitting.loop import as_unit, channel_mean
from neurep.models.encoders import standardise_embedding


def _clip(items: int = 6, seed: int = 0) -> torch.Tensor:
    """(items, 3, 16, 16) uint8: a gradient that moves from frame to frame."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 200, 16)
    frames = [
        (ramp[None, :] + ramp[:, None] * 0.2 + 7 * t).remainder(256).expand(3, 16, 16)
        for t in range(items)
    ]
    noise = torch.randint(0, 20, (items, 3, 16, 16), generator=generator)
    return (torch.stack(frames) + noise).clamp(0, 255).to(torch.uint8)


def _video_preset(batch_items: int | None, epochs: int = 2):
    preset = get_preset("fast").for_profile("video")
    return replace(preset, batch_items=batch_items, epochs=epochs, parameters_per_sample=None)


def test_as_unit_maps_uint8_codes_to_their_fraction_of_255() -> None:
    codes = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(as_unit(codes), codes.double().div(255).float())
    floats = torch.rand(5)
    assert torch.equal(as_unit(floats), floats)


def test_channel_mean_of_a_uint8_clip_in_chunks_equals_the_float_mean() -> None:
    clip = _clip(items=37)
    expected = as_unit(clip).double().mean(dim=(0, 2, 3)).float()
    torch.testing.assert_close(channel_mean(clip, items_per_chunk=5), expected)


def test_a_uint8_signal_fits_as_its_float_version() -> None:
    """The same fit, up to the float64 mean of the uint8 path's start (a last-bit change)."""
    clip = _clip()
    preset = _video_preset(batch_items=2)
    models = plan(preset, 3, (16, 16), items=clip.shape[0])
    steps = preset.steps_for(clip.shape[0])
    from_codes = fit_signal(clip, models, steps=steps, seed=4, progress=False)
    from_floats = fit_signal(as_unit(clip), models, steps=steps, seed=4, progress=False)
    assert from_codes.history == pytest.approx(from_floats.history, abs=1e-3)
    torch.testing.assert_close(from_codes.embedding, from_floats.embedding, atol=1e-3, rtol=0)


def test_epochs_of_batches_set_the_steps_and_cover_every_item() -> None:
    clip = _clip(items=5)
    preset = _video_preset(batch_items=2, epochs=3)
    assert preset.steps_for(5) == 3 * 3  # ceil(5 / 2) batches an epoch
    models = plan(preset, 3, (16, 16), items=5)
    result = fit_signal(clip, models, steps=preset.steps_for(5), seed=0, progress=False)
    assert result.steps == 9 and len(result.history) == 9
    assert result.embedding.shape[0] == 5
    assert torch.isfinite(result.embedding).all()


def test_a_batched_fit_is_repeatable_and_its_seed_matters() -> None:
    clip = _clip(items=4)
    preset = _video_preset(batch_items=3)
    models = plan(preset, 3, (16, 16), items=4)
    runs = [
        fit_signal(clip, models, steps=preset.steps_for(4), seed=seed, progress=False)
        for seed in (1, 1, 2)
    ]
    assert runs[0].history == runs[1].history
    assert torch.equal(runs[0].embedding, runs[1].embedding)
    assert runs[0].history != runs[2].history


def test_batched_plans_standardise_each_item_alone_and_others_do_not() -> None:
    video = plan(_video_preset(batch_items=2), 3, (32, 32), items=10)
    image = plan(get_preset("fast"), 3, (32, 32))
    assert video.encoder["configuration"]["per_item_norm"] is True
    assert "per_item_norm" not in image.encoder["configuration"]


@settings(max_examples=40, deadline=None)
@given(
    items=st.integers(2, 5),
    channels=st.integers(1, 4),
    side=st.integers(1, 4),
    split=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_per_item_standardising_does_not_depend_on_the_batch(
    items: int, channels: int, side: int, split: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(items, channels, side, side + 1, generator=generator, dtype=torch.float64)
    x = x * torch.rand(items, 1, 1, 1, generator=generator, dtype=torch.float64) * 10 + 3
    whole = standardise_embedding(x, 2.0, per_item=True)
    split = min(split, items - 1)
    parts = torch.cat(
        [standardise_embedding(x[:split], 2.0, True), standardise_embedding(x[split:], 2.0, True)]
    )
    torch.testing.assert_close(whole, parts)
    rms = whole.square().mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, 2.0), rtol=1e-4, atol=1e-4)


def test_fixed_strides_are_used_and_must_agree() -> None:
    preset = get_preset("paper").for_profile("video")
    models = plan(preset, 3, (96, 160), items=3)
    assert models.encoder["configuration"]["strides"] == [10, 8, 3, 2]
    assert models.decoder["configuration"]["strides"] == [5, 4, 4, 3, 2]
    assert models.decoder["name"] == "nerv"
    assert len(models.decoder["configuration"]["widths"]) == 5  # one per NeRV block
    assert models.padded_shape == (480, 480)
    with pytest.raises(ValueError, match="multiply"):
        plan(replace(preset, decoder_strides=(4, 4)), 3, (96, 160))


def test_steps_override_clears_epochs_but_epochs_override_keeps_them() -> None:
    preset = get_preset("balanced")
    by_steps = preset.with_overrides(steps=7).for_profile("video")
    assert by_steps.epochs is None and by_steps.steps_for(100) == 7
    by_epochs = preset.with_overrides(epochs=2, batch_items=4).for_profile("video")
    assert by_epochs.steps_for(10) == 2 * 3  # batches of 4 frames
