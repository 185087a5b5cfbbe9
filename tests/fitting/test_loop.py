"""The fitting loop's start: the decoder's output begins at the signal's mean."""

from __future__ import annotations

import pytest
import torch

from neurep.fitting.loop import start_from_mean
from neurep.models import build


def _decoder(name: str, ndim: int, out_channels: int) -> torch.nn.Module:
    configuration = {
        "ndim": ndim,
        "in_channels": 4,
        "out_channels": out_channels,
        "strides": [2, 2],
        "widths": [6] if name == "conv_transpose" else [6, 5],
    }
    return build({"name": name, "configuration": configuration})


@pytest.mark.parametrize("name", ["conv_transpose", "nerv"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_output_bias_is_the_per_channel_mean(name: str, ndim: int) -> None:
    torch.manual_seed(0)
    decoder = _decoder(name, ndim, out_channels=3)
    target = torch.rand(2, 3, *([8] * ndim)) * torch.tensor([0.2, 0.5, 0.9]).view(1, 3, *[1] * ndim)
    start_from_mean(decoder, target, "mse")
    expected = target.mean(dim=(0, *range(2, target.dim())))
    torch.testing.assert_close(decoder.output_layer.bias.detach(), expected)


def test_output_bias_with_zero_weights_reproduces_the_mean_image() -> None:
    """The bias is the output's offset: a decoder whose last weights are 0 outputs the mean."""
    decoder = _decoder("conv_transpose", 2, out_channels=2)
    target = torch.stack([torch.full((8, 8), 0.25), torch.linspace(0, 1, 64).view(8, 8)])[None]
    start_from_mean(decoder, target, "mse")
    with torch.no_grad():
        decoder.output_layer.weight.zero_()
        out = decoder(torch.randn(1, 4, 2, 2))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.25, 0.5]))
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))


def test_occupancy_starts_at_the_logit_of_the_mean_and_stays_finite() -> None:
    decoder = _decoder("conv_transpose", 3, out_channels=1)
    sparse = torch.zeros(1, 1, 8, 8, 8)
    sparse[0, 0, :2] = 1.0  # a quarter occupied
    start_from_mean(decoder, sparse, "bce")
    assert torch.sigmoid(decoder.output_layer.bias).item() == pytest.approx(0.25, abs=1e-6)
    start_from_mean(decoder, torch.zeros(1, 1, 8, 8, 8), "bce")  # empty: no -inf
    assert torch.isfinite(decoder.output_layer.bias).all()


def _small_fit(train_encoder: bool, steps: int = 6):
    from neurep.fitting import fit_signal, get_preset, plan

    preset = get_preset("fast").with_overrides(train_encoder=train_encoder, steps=steps)
    torch.manual_seed(1)
    signal = torch.rand(1, 3, 32, 48)
    models = plan(preset, 3, (32, 48))
    result = fit_signal(signal, models, steps=steps, seed=3, progress=False)
    return signal, models, result


def test_frozen_encoder_keeps_the_embedding_of_the_untrained_encoder() -> None:
    """train_encoder=False: the stored embedding is the freshly seeded encoder's output."""
    from neurep.fitting.loop import pad_to

    signal, models, result = _small_fit(train_encoder=False)
    torch.manual_seed(3)  # fit_signal seeds, then builds the encoder first
    encoder = build(models.encoder)
    with torch.no_grad():
        expected = encoder(pad_to(signal, models.padded_shape))
    torch.testing.assert_close(result.embedding, expected)
    assert len(result.history) == 6
    assert result.history[-1] > result.history[0]  # the decoder still learns


def test_trained_encoder_moves_the_embedding_away_from_its_initial_value() -> None:
    """The default trains the encoder, so the embedding differs from the untrained one."""
    _, _, frozen = _small_fit(train_encoder=False)
    _, _, trained = _small_fit(train_encoder=True)
    assert frozen.embedding.shape == trained.embedding.shape
    assert not torch.allclose(frozen.embedding, trained.embedding, atol=1e-4)


def _fit_with_encoder_scale(scale: float, steps: int = 5):
    from neurep.fitting import fit_signal, get_preset, plan

    preset = get_preset("fast").with_overrides(encoder_lr_scale=scale, steps=steps)
    torch.manual_seed(1)
    signal = torch.rand(1, 3, 32, 48)
    models = plan(preset, 3, (32, 48))
    return signal, models, fit_signal(signal, models, steps=steps, seed=3, progress=False)


def test_encoder_lr_scale_zero_leaves_the_encoder_untrained_and_the_decoder_learning() -> None:
    from neurep.fitting.loop import pad_to

    signal, models, result = _fit_with_encoder_scale(0.0)
    torch.manual_seed(3)
    encoder = build(models.encoder)
    with torch.no_grad():
        expected = encoder(pad_to(signal, models.padded_shape))
    torch.testing.assert_close(result.embedding, expected)  # layouts differ: not bit-exact
    assert result.history[-1] > result.history[0]


def test_encoder_lr_scale_sets_the_encoder_rate_at_every_step(monkeypatch) -> None:
    """Each step the encoder's group runs at scale x the decoder's scheduled rate."""
    rates: list[tuple[float, ...]] = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(tuple(group["lr"] for group in self.param_groups))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    _, models, _ = _fit_with_encoder_scale(0.25, steps=4)
    assert len(rates) == 4
    decoder_rates = [decoder for _, decoder in rates]
    assert len(set(decoder_rates)) > 1  # the schedule moves
    for encoder_rate, decoder_rate in rates:
        assert encoder_rate == pytest.approx(0.25 * decoder_rate, rel=1e-12)
    assert max(decoder_rates) <= models.preset.learning_rate


def test_a_whole_signal_fit_builds_its_pyramid_once_and_fits_as_if_rebuilt(monkeypatch) -> None:
    """Every step sees the same input, so the encoder's pyramid is computed once; the fit is
    the one that runs the encoder's whole forward every step."""
    from neurep.fitting import fit_signal, get_preset, loop, plan
    from neurep.models import encoders

    preset = get_preset("fast").with_overrides(steps=4)
    torch.manual_seed(1)
    signal = torch.rand(1, 3, 32, 48)
    models = plan(preset, 3, (32, 48))
    calls = []
    pyramid = encoders.laplacian_pyramid
    monkeypatch.setattr(
        encoders, "laplacian_pyramid", lambda *a, **k: calls.append(1) or pyramid(*a, **k)
    )
    cached = fit_signal(signal, models, steps=4, seed=3, progress=False)
    assert len(calls) == 1  # the steps and the final embedding share it

    def every_step(encoder, batches, train):
        return (lambda padded, _: encoder(padded)), list(encoder.parameters())

    monkeypatch.setattr(loop, "_embedding_source", every_step)
    calls.clear()
    rebuilt = fit_signal(signal, models, steps=4, seed=3, progress=False)
    assert len(calls) == 4 + 1
    torch.testing.assert_close(cached.embedding, rebuilt.embedding)
    assert cached.history == pytest.approx(rebuilt.history, abs=1e-6)
