"""Writing decoded objects as PNG / TIFF / .npy (the part of ``neurep decode`` after decoding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from neurep.cli._common import CommandError
from neurep.cli._writers import write_decoded

RNG = np.random.default_rng(5)


@pytest.mark.parametrize(
    "pixels",
    [
        RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8),
        RNG.integers(0, 256, (9, 11, 4), dtype=np.uint8),
        RNG.integers(0, 256, (9, 11), dtype=np.uint8),
        RNG.integers(0, 65536, (9, 11), dtype=np.uint16),
        RNG.random((9, 11)) > 0.5,
    ],
    ids=["rgb8", "rgba8", "gray8", "gray16", "bool"],
)
def test_png_holds_integer_images_exactly(tmp_path, pixels):
    path = tmp_path / "out.png"
    write_decoded(pixels, path, channels_first=False)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)


def test_float_images_go_to_tiff_exactly_but_not_to_png(tmp_path):
    pixels = RNG.standard_normal((7, 5)).astype(np.float32)
    write_decoded(pixels, tmp_path / "out.tif", channels_first=False)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.tif")), pixels)
    with pytest.raises(CommandError, match=r"\.npy"):
        write_decoded(pixels, tmp_path / "out.png", channels_first=False)
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*partial"))


def test_channels_first_tensors_are_written_channels_last(tmp_path):
    chw = torch.from_numpy(RNG.integers(0, 256, (3, 6, 8), dtype=np.uint8))
    write_decoded(chw, tmp_path / "out.png", channels_first=True)
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out.png")), chw.permute(1, 2, 0)
    )


def test_npy_keeps_the_exact_shape_and_dtype(tmp_path):
    volume = torch.randn(3, 4, 5, dtype=torch.float64)
    write_decoded(volume, tmp_path / "out.npy", channels_first=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), volume.numpy())


def test_pil_images_are_saved_in_their_mode(tmp_path):
    image = Image.fromarray(RNG.integers(0, 256, (5, 6, 2), dtype=np.uint8))
    write_decoded(image, tmp_path / "out.png", channels_first=False)
    reread = Image.open(tmp_path / "out.png")
    assert reread.mode == "LA"
    np.testing.assert_array_equal(np.asarray(reread), np.asarray(image))


def test_arrays_that_are_not_images_are_refused_with_a_hint(tmp_path):
    with pytest.raises(CommandError, match=r"write \.npy"):
        write_decoded(np.zeros((4, 4, 4, 4), np.uint8), tmp_path / "out.tif", channels_first=False)
    with pytest.raises(CommandError, match="cannot write"):
        write_decoded(np.zeros(5), tmp_path / "out.jpg", channels_first=False)
