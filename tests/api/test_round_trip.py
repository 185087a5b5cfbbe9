"""fit -> save -> load -> decode round trips for each input kind of the image and array adapters."""

from __future__ import annotations

import inspect
import json
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
import zarr
from PIL import Image

import neurep

FEW_STEPS = dict(preset="fast", steps=3, progress=False)


def _round_trip(obj, tmp_path, **kwargs):
    datum = neurep.fit(obj, **{**FEW_STEPS, **kwargs})
    path = tmp_path / "datum.nrep"
    nbytes = datum.save(path)
    assert nbytes == path.stat().st_size
    loaded = neurep.load(path)
    return datum, loaded, loaded.decode()


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((37, 53, 3), np.uint8),  # odd sizes, RGB
        ((41, 29), np.uint8),  # gray
        ((33, 47, 4), np.uint8),  # RGBA
        ((30, 44, 3), np.uint16),
        ((25, 31), np.float32),
    ],
)
def test_numpy_images_come_back_with_their_shape_and_dtype(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        image = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    else:
        image = rng.normal(5.0, 2.0, size=shape).astype(dtype)
    datum, _, decoded = _round_trip(image, tmp_path)
    assert isinstance(decoded, np.ndarray)
    assert decoded.shape == image.shape and decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, datum.decode())
    if np.issubdtype(dtype, np.floating):  # floats stay inside the original value range
        assert image.min() <= decoded.min() and decoded.max() <= image.max()


def test_image_file_paths_decode_to_arrays_of_the_file(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    source = tmp_path / "photo.png"
    Image.fromarray(pixels).save(source)
    _, loaded, decoded = _round_trip(source, tmp_path)
    assert decoded.shape == pixels.shape and decoded.dtype == np.uint8
    assert loaded.metadata["modality"]["name"] == "image"


def test_torch_chw_tensors_come_back_as_tensors(tmp_path):
    tensor = torch.rand(3, 36, 52)
    _, _, decoded = _round_trip(tensor, tmp_path)
    assert isinstance(decoded, torch.Tensor)
    assert decoded.shape == tensor.shape and decoded.dtype == tensor.dtype


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((500,), np.float64), ((23, 70), np.int16), ((12, 14, 18), np.float32)],
)
def test_arrays_of_one_two_and_three_dimensions_round_trip(tmp_path, shape, dtype):
    rng = np.random.default_rng(2)
    array = (rng.normal(size=shape) * 100).astype(dtype)
    datum, loaded, decoded = _round_trip(array, tmp_path, modality="array")
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, datum.decode())
    assert loaded.metadata["signal"]["shape"] == [1, 1, *shape]


def test_plain_zarr_and_plain_safetensors_read_the_file(tmp_path):
    image = np.random.default_rng(3).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    datum = neurep.fit(image, precision="float32", **FEW_STEPS)  # weights stored as they are
    path = tmp_path / "x.nrep"
    datum.save(path)
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    metadata = dict(group.attrs)["neurep"]
    assert metadata["modality"]["name"] == "image"
    assert metadata["decoder"] == datum.metadata["decoder"]
    embedding = np.asarray(group["embedding"][...])
    assert list(embedding.shape) == metadata["embedding"]["shape"]
    with zipfile.ZipFile(path) as archive:
        weights = safetensors.torch.load(archive.read("weights.safetensors"))
    state = datum.decoder.state_dict()
    assert set(weights) == set(state)
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    json.dumps(metadata)  # plain JSON


def test_open_reads_metadata_without_weights(tmp_path, monkeypatch):
    image = np.zeros((20, 30), dtype=np.uint8)
    path = tmp_path / "x.nrep"
    neurep.fit(image, **FEW_STEPS).save(path)
    reader = neurep.open(path)
    monkeypatch.setattr(type(reader), "read_tensors", lambda self: pytest.fail("weights read"))
    assert reader.metadata["signal"]["shape"] == [1, 1, 20, 30]
    loaded = neurep.load(path)  # lazy as well
    assert loaded.metadata["fit"]["steps"] == 3
    assert loaded.metadata["fit"]["train_encoder"] is True  # how the embedding was made
    preset = neurep.fitting.get_preset("fast")
    assert loaded.metadata["fit"]["encoder_lr_scale"] == preset.encoder_lr_scale


def test_the_same_seed_gives_the_same_datum(tmp_path):
    image = np.random.default_rng(4).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    first = neurep.fit(image, seed=7, **FEW_STEPS).decode()
    second = neurep.fit(image, seed=7, **FEW_STEPS).decode()
    third = neurep.fit(image, seed=8, **FEW_STEPS).decode()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


def test_fitting_learns_the_image(tmp_path):
    """A short fit of a smooth image beats the best constant guess by a wide margin."""
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    datum = neurep.fit(image, preset="fast", steps=120, progress=False)
    constant = image.astype(np.float64).mean(axis=(0, 1))
    mse_constant = ((image - constant) ** 2).mean()
    psnr_constant = 10 * np.log10(255**2 / mse_constant)
    assert datum.metadata["quality"]["psnr"] > psnr_constant + 8


def test_quantised_weights_decode_identically_after_loading(tmp_path):
    image = np.random.default_rng(5).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    datum = neurep.fit(image, precision="int8", **FEW_STEPS)
    path = tmp_path / "q.nrep"
    datum.save(path)
    loaded = neurep.load(path)
    assert loaded.metadata["weights"]["precision"] == "int8"
    np.testing.assert_array_equal(loaded.decode(), datum.decode())


def test_early_stop_at_a_psnr_target_records_the_margin_it_aimed_at():
    image = np.full((32, 32), 128, dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=200, psnr=20.0, progress=False)
    assert datum.metadata["fit"]["steps"] < 200
    assert datum.metadata["fit"]["target_psnr"] == pytest.approx(20.2)
    assert datum.metadata["fit"]["final_training_psnr"] >= 20.2


def test_fit_has_one_quality_target_and_no_research_knobs():
    parameters = inspect.signature(neurep.fit).parameters
    assert "psnr" in parameters
    assert "target_psnr" not in parameters and "train_encoder" not in parameters


def test_requantising_a_float32_datum_matches_its_saved_file(tmp_path):
    image = np.random.default_rng(6).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    datum = neurep.fit(image, precision="float32", **FEW_STEPS)
    small = datum.with_precision("int6")
    assert small.metadata["weights"]["precision"] == "int6"
    path = tmp_path / "int6.nrep"
    assert small.save(path) < datum.save(tmp_path / "float32.nrep")
    np.testing.assert_array_equal(neurep.load(path).decode(), small.decode())
    with pytest.raises(ValueError, match="float32"):
        small.with_precision("int4")


def test_a_frozen_encoder_fit_stores_the_untrained_embedding(tmp_path):
    """Preset.train_encoder=False: same seed, same untrained encoder, so the same embedding
    whatever the number of steps; the decoder still learns and the file says how it was made."""
    image = np.random.default_rng(4).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    frozen = neurep.fitting.get_preset("fast").with_overrides(train_encoder=False)
    short = neurep.fit(image, preset=frozen, steps=2, progress=False)
    longer = neurep.fit(image, preset=frozen, steps=6, progress=False)
    np.testing.assert_array_equal(short.embedding(), longer.embedding())
    assert longer.metadata["fit"]["train_encoder"] is False
    path = tmp_path / "frozen.nrep"
    longer.save(path)
    np.testing.assert_array_equal(neurep.load(path).decode(), longer.decode())


def test_a_preset_must_be_a_name_or_a_preset_object():
    with pytest.raises(neurep.InputError, match="preset"):
        neurep.fit(np.zeros((8, 8), np.uint8), preset=3, steps=1, progress=False)
    with pytest.raises(neurep.InputError, match="unknown preset"):
        neurep.fit(np.zeros((8, 8), np.uint8), preset="nope", steps=1, progress=False)
