"""Stacked fits (several small items at once) equal each item's fit alone."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest
import torch

from neurep.fitting import fit_signal, get_preset, plan
from neurep.fitting.stacked import fit_signals_stacked
from neurep.models.vmapped import PatchConv, PatchConvTranspose, fused_states_windows_last
from neurep.nn.s3k import S3KConvNd

#: Stacked and single fits run different kernels (batched matmuls, grouped convolutions,
#: S3K's sums in another order, against channels-last convolutions), so they agree to
#: rounding, which Adam's first steps amplify (an update is about lr * sign(gradient)) and
#: the embedding's standardisation amplifies again for a channel of little spread. After 10
#: steps we see up to ~2e-4 of a weight tensor's largest entry and ~3e-3 of the embedding's
#: (the ramp): as much as fit_signal differs from itself between 1 and 2 threads. A real
#: mistake (a seed, a start, a learning rate) moves them by 1e-2 and more.
WEIGHTS_RELATIVE = 2e-3
EMBEDDING_RELATIVE = 2e-2


def _images(count: int = 3, shape: tuple[int, int] = (20, 30)) -> list[torch.Tensor]:
    """Different contents: noise, darker noise as uint8 codes, a smooth ramp."""
    generator = torch.Generator().manual_seed(3)
    noise = torch.rand(1, 3, *shape, generator=generator)
    codes = (torch.rand(1, 3, *shape, generator=generator) * 128).to(torch.uint8)
    ramp = torch.linspace(0, 1, shape[0] * shape[1]).reshape(1, 1, *shape).expand(1, 3, *shape)
    return [noise, codes, ramp.contiguous()][:count]


def _assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    scale = expected.abs().max().clamp_min(1e-12)
    assert ((actual - expected).abs().max() / scale).item() <= tolerance


def _assert_same_fit(stacked, alone, steps: int) -> None:
    assert stacked.steps == alone.steps == steps
    assert not stacked.decoder.training
    assert stacked.decoder.to_config() == alone.decoder.to_config()
    for (name, mine), (_, theirs) in zip(
        stacked.decoder.named_parameters(), alone.decoder.named_parameters(), strict=True
    ):
        assert mine.device.type == "cpu", name
        _assert_close_relative(mine, theirs, WEIGHTS_RELATIVE)
    assert stacked.embedding.shape == alone.embedding.shape
    _assert_close_relative(stacked.embedding, alone.embedding, EMBEDDING_RELATIVE)
    assert stacked.history == pytest.approx(alone.history, abs=1e-3)


@pytest.mark.parametrize("train_encoder", [True, False])
def test_each_stacked_image_fit_equals_its_fit_alone(train_encoder: bool) -> None:
    images = _images()
    preset = replace(get_preset("fast").for_profile("image"), train_encoder=train_encoder)
    models = plan(preset, 3, (20, 30))
    seeds = [0, 7, 123]
    results = fit_signals_stacked(images, models, steps=10, seeds=seeds, device="cpu")
    assert len(results) == 3
    for image, seed, stacked in zip(images, seeds, results, strict=True):
        alone = fit_signal(image, models, steps=10, seed=seed, progress=False, device="cpu")
        _assert_same_fit(stacked, alone, steps=10)


def test_stacked_occupancy_fits_equal_their_fits_alone() -> None:
    generator = torch.Generator().manual_seed(5)
    grids = [(torch.rand(1, 1, 32, 32, 32, generator=generator) > p).float() for p in (0.6, 0.8)]
    models = plan(get_preset("fast").for_profile("shape"), 1, (32, 32, 32))
    results = fit_signals_stacked(grids, models, steps=4, seeds=[1, 2], loss="bce", device="cpu")
    for grid, seed, stacked in zip(grids, [1, 2], results, strict=True):
        alone = fit_signal(grid, models, steps=4, seed=seed, loss="bce", progress=False)
        _assert_same_fit(stacked, alone, steps=4)


def test_the_same_seed_on_the_same_item_gives_the_same_fit_in_any_slot() -> None:
    image = _images(1)[0]
    models = plan(get_preset("fast").for_profile("image"), 3, (20, 30))
    first, second = fit_signals_stacked([image, image], models, steps=3, seeds=[4, 4])
    assert first.history == second.history
    assert torch.equal(first.embedding, second.embedding)


def test_mismatched_signals_or_seeds_are_refused() -> None:
    models = plan(get_preset("fast").for_profile("image"), 3, (20, 30))
    image = _images(1)[0]
    with pytest.raises(ValueError, match="share shape"):
        fit_signals_stacked([image, image[..., :-1]], models, steps=1, seeds=[0, 1])
    with pytest.raises(ValueError, match="seeds"):
        fit_signals_stacked([image, image], models, steps=1, seeds=[0])
    with pytest.raises(ValueError, match="at least one"):
        fit_signals_stacked([], models, steps=1, seeds=[])


@pytest.mark.parametrize(
    ("ndim", "kernel", "states"), [(1, 8, 4), (2, 4, 8), (2, (4, 2), 8), (3, (2, 4, 3), 5)]
)
def test_the_windows_last_s3k_contraction_is_the_layers_own(ndim, kernel, states) -> None:
    torch.manual_seed(0)
    layer = S3KConvNd(3, 5, kernel, ndim=ndim, state_size=states, hidden_channels=4)
    layer = layer.double()
    x = torch.randn(2, 3, *[12] * ndim, dtype=torch.double, requires_grad=True)
    inputs = [x, *layer.parameters()]
    expected = layer(x)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    layer._fused_states = types.MethodType(fused_states_windows_last, layer)
    actual = layer(x)
    torch.testing.assert_close(actual, expected)
    actual_grads = torch.autograd.grad(actual.square().sum(), inputs)
    for mine, theirs in zip(actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (torch.nn.Conv2d(5, 7, 1), (2, 5, 6, 4)),
        (torch.nn.Conv2d(5, 7, 2, stride=2), (2, 5, 7, 4)),
        (torch.nn.Conv3d(5, 7, 2, stride=2, bias=False), (2, 5, 4, 6, 2)),
        (torch.nn.Conv1d(5, 7, 3, stride=3), (2, 5, 10)),
        (torch.nn.ConvTranspose2d(5, 7, 2, stride=2), (2, 5, 3, 4)),
        (torch.nn.ConvTranspose3d(5, 7, 2, stride=2), (2, 5, 3, 4, 2)),
        (torch.nn.ConvTranspose1d(5, 7, 4, stride=4, bias=False), (2, 5, 3)),
    ],
)
def test_patch_convolutions_as_matmuls_equal_the_convolutions(conv, shape) -> None:
    torch.manual_seed(1)
    x = torch.randn(shape)
    patch = (
        PatchConvTranspose
        if isinstance(
            conv, torch.nn.ConvTranspose1d | torch.nn.ConvTranspose2d | torch.nn.ConvTranspose3d
        )
        else PatchConv
    )
    torch.testing.assert_close(patch(conv)(x), conv(x))
