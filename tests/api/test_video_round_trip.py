"""Video end to end: fit, save, load, decode for every input kind, and frame ranges."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from _clips import encode, moving_gradient, write_pngs

import neurep
from neurep import datum as datum_module

FAST = {"preset": "fast", "epochs": 1, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_gradient(frames=7, height=24, width=32)  # (T, H, W, 3) uint8


@pytest.fixture(scope="module")
def saved(clip, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.nrep"
    neurep.fit(clip, **FAST).save(path)
    return path


def test_a_numpy_clip_comes_back_with_its_shape_dtype_and_default_fps(clip, saved) -> None:
    loaded = neurep.load(saved)
    decoded = loaded.decode()
    assert isinstance(decoded, np.ndarray)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    configuration = loaded.metadata["modality"]["configuration"]
    assert loaded.metadata["modality"]["name"] == "video"
    assert configuration["fps"] == "25/1" and configuration["frames"] == 7
    assert loaded.num_items == 7
    quality = loaded.metadata["quality"]
    assert quality["psnr_frames"]["min"] <= quality["psnr_frames"]["mean"]


@pytest.mark.parametrize(
    "items",
    [slice(2, 5), slice(None, None, 3), [4, 0, 0, 6], -1, 3, range(1, 3)],
    ids=["slice", "step", "list", "negative", "index", "range"],
)
def test_a_frame_selection_equals_the_same_rows_of_the_full_decode(saved, items) -> None:
    full = neurep.load(saved).decode()
    expected = full[items] if not isinstance(items, list | range) else full[list(items)]
    assert np.array_equal(neurep.load(saved).decode(items), expected)


def test_a_frame_range_reads_only_its_embedding_rows(saved, monkeypatch) -> None:
    loaded = neurep.load(saved)
    reads = []
    original = loaded._reader.read_array

    def spy(name, selection=None):
        reads.append(selection)
        return original(name, selection)

    monkeypatch.setattr(loaded._reader, "read_array", spy)
    loaded.decode([5, 6, 2])
    assert reads == [slice(5, 7), slice(2, 3)]


def test_bad_selections_are_refused(saved) -> None:
    loaded = neurep.load(saved)
    with pytest.raises(IndexError):
        loaded.decode(7)
    with pytest.raises(IndexError):
        loaded.decode(slice(4, 4))
    with pytest.raises(TypeError):
        loaded.decode([1.5])


def test_a_long_clip_decodes_in_batches_to_the_same_values(saved, monkeypatch) -> None:
    whole = neurep.load(saved).decode()
    one_frame = 3 * 24 * 32
    monkeypatch.setattr(datum_module, "DECODE_BATCH_ELEMENTS", 2 * one_frame)  # 2 frames
    batched = neurep.load(saved)
    assert batched._items_per_batch() == 2
    assert np.array_equal(batched.decode(), whole)
    assert np.array_equal(batched.decode([6, 1, 2]), whole[[6, 1, 2]])


def test_a_tensor_clip_comes_back_as_a_tensor_of_its_dtype(clip, tmp_path) -> None:
    tensor = torch.from_numpy(clip.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    datum = neurep.fit(tensor, **FAST)
    datum.save(tmp_path / "t.nrep")
    decoded = neurep.load(tmp_path / "t.nrep").decode()
    assert isinstance(decoded, torch.Tensor)
    assert decoded.shape == tensor.shape and decoded.dtype == torch.float32
    assert torch.equal(decoded[1:3], neurep.load(tmp_path / "t.nrep").decode(slice(1, 3)))


def test_a_file_with_audio_fits_its_video_alone_and_keeps_an_exact_fps(clip, tmp_path) -> None:
    source = encode(tmp_path / "in.mp4", clip, fps=Fraction(30000, 1001), audio=True)
    datum = neurep.fit(str(source), **FAST)
    datum.save(tmp_path / "v.nrep")
    loaded = neurep.load(tmp_path / "v.nrep")
    configuration = loaded.metadata["modality"]["configuration"]
    assert configuration["fps"] == "30000/1001"
    assert configuration["ignored_streams"] == ["audio"]
    assert configuration["codec"] == "h264"
    decoded = loaded.decode()
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8


def test_read_options_pick_frames_and_size_and_are_recorded(clip, tmp_path) -> None:
    source = encode(tmp_path / "in.mkv", clip, fps=24)
    datum = neurep.fit(str(source), frames="1:5", size=(16, 12), **FAST)
    configuration = datum.metadata["modality"]["configuration"]
    assert configuration["frame_range"] == [1, 5] and configuration["size"] == [16, 12]
    assert datum.decode().shape == (4, 12, 16, 3)
    assert datum.metadata["signal"]["shape"] == [4, 3, 12, 16]


def test_an_image_refuses_video_read_options(clip) -> None:
    with pytest.raises(neurep.InputError, match="no option 'frames'"):
        neurep.fit(clip[0], frames=(0, 2), **FAST)


def test_a_folder_of_frames_fits_when_the_modality_is_named(clip, tmp_path) -> None:
    folder = write_pngs(tmp_path / "frames", clip, [f"f{i}.png" for i in range(len(clip))])
    datum = neurep.fit(str(folder), modality="video", **FAST)
    assert datum.decode().shape == clip.shape
    assert datum.metadata["modality"]["configuration"]["kind"] == "folder"


def test_a_byte_budget_holds_for_a_clip_and_bpp_counts_every_frame(clip, tmp_path) -> None:
    datum = neurep.fit(clip, max_bytes=6000, **FAST)
    assert datum.save(tmp_path / "b.nrep") <= 6000
    frames, height, width = clip.shape[:3]
    bpp = 6.0  # 4,032 bytes for this clip
    budgeted = neurep.fit(clip, bpp=bpp, **FAST)
    size = budgeted.save(tmp_path / "bpp.nrep")
    assert size * 8 <= bpp * frames * height * width


def test_a_quality_target_stops_a_clip_at_the_end_of_an_epoch(clip) -> None:
    """The target is checked on each epoch's mean PSNR: a target any first epoch meets
    stops the fit after exactly one pass over the frames."""
    datum = neurep.fit(clip, preset="fast", epochs=5, psnr=1.0, progress=False)
    assert datum.metadata["fit"]["steps"] == len(clip)  # one frame a step, one epoch
    assert datum.metadata["fit"]["target_psnr"] == pytest.approx(1.2)
