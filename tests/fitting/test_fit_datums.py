"""fit_datums: several small items fitted at once (stacked), each its own datum, equal to
its fit alone (``neurep.fit``) up to floating-point rounding."""

from __future__ import annotations

import numpy as np
import pytest

import neurep
from neurep.api import prepare_fit
from neurep.fitting import fit_datums

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A few steps: a fit's rounding differences grow with every Adam step, and on a tiny image
#: the fast preset soon makes them large: after 20 steps ``neurep.fit`` alone differs from
#: itself between 1 and 2 torch threads by up to 3 dB, as the stacked fit differs from it.
#: After 3 they are within a few levels and 0.05 dB.
OPTIONS = {"preset": "fast", "steps": 3, "device": "cpu"}
#: Metadata that rounding may change: the fit's time and training PSNR, and the quality.
VARIES = {"wall_time_s", "final_training_psnr", "quality", "psnr", "ms_ssim", "threads"}


def _images(shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Smooth images, each its own."""
    images = []
    for index, (height, width) in enumerate(shapes):
        y, x = np.mgrid[0:height, 0:width] / max(height, width)
        phase = 1.3 * index
        channels = [
            0.5 + 0.4 * np.sin(3 * x + phase),
            0.5 + 0.4 * np.cos(2 * y - phase),
            (x + y + 0.2 * index) % 1.0 * 0.8 + 0.1,
        ]
        images.append((np.stack(channels, axis=-1) * 255).round().astype(np.uint8))
    return images


def _fit_all(images: list[np.ndarray]) -> list[neurep.NeuralDatum]:
    prepared = [prepare_fit(image, progress=False, **OPTIONS) for image in images]
    first = prepared[0]
    return fit_datums(
        [(p.obj, p.adapter, p.signal) for p in prepared],
        first.preset,
        first.target,
        seeds=[p.seed for p in prepared],
        device="cpu",
    )


def _same_structure(a, b, path: str = "") -> None:
    """Same keys and values, numbers to rounding (quantisation scales follow the weights)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            _same_structure(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for x, y in zip(a, b, strict=True):
            _same_structure(x, y, path)
    elif isinstance(a, float):
        assert isinstance(b, float), path
        if path.rsplit(".", 1)[-1] not in VARIES:
            assert a == pytest.approx(b, rel=1e-2), path
    elif path.rsplit(".", 1)[-1] not in VARIES:
        assert a == b, path


def _assert_close(datum: neurep.NeuralDatum, alone: neurep.NeuralDatum) -> None:
    decoded, expected = datum.decode(), alone.decode()
    assert decoded.dtype == expected.dtype == np.uint8 and decoded.shape == expected.shape
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    # rounding may move a weight across an int8 step, which moves some pixels by a few levels
    # (CPUs differ here); another item's image would differ by tens of levels everywhere
    assert difference.max() <= 4 and difference.mean() <= 1.0, (
        difference.max(),
        difference.mean(),
    )
    assert datum.metadata["quality"]["psnr"] == pytest.approx(
        alone.metadata["quality"]["psnr"], abs=0.05
    )
    _same_structure(datum.metadata, alone.metadata)


def test_stacked_datums_equal_each_fit_alone():
    images = _images([(16, 20)] * 3)
    datums = _fit_all(images)
    assert len(datums) == 3
    for image, datum in zip(images, datums, strict=True):
        _assert_close(datum, neurep.fit(image, progress=False, **OPTIONS))
    assert len({d.metadata["fit"]["wall_time_s"] for d in datums}) == 1  # the stacked share


def test_items_of_different_shapes_fall_back_to_one_at_a_time():
    images = _images([(16, 20), (12, 12), (16, 20)])
    datums = _fit_all(images)
    for image, datum in zip(images, datums, strict=True):
        assert datum.decode().shape == image.shape
        _assert_close(datum, neurep.fit(image, progress=False, **OPTIONS))


def test_a_size_budget_falls_back_to_fit_datum():
    images = _images([(16, 16)] * 2)
    prepared = [prepare_fit(i, progress=False, max_bytes=4000, **OPTIONS) for i in images]
    datums = fit_datums(
        [(p.obj, p.adapter, p.signal) for p in prepared],
        prepared[0].preset,
        prepared[0].target,
        seeds=[0, 0],
        device="cpu",
    )
    for image, datum in zip(images, datums, strict=True):
        alone = neurep.fit(image, progress=False, max_bytes=4000, **OPTIONS)
        assert np.array_equal(datum.decode(), alone.decode())
