"""VideoAdapter: video files, frame folders, numpy and torch clips in; the same kind back."""

from __future__ import annotations

import ast
import json
import math
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _clips import decode_with_pyav, encode, encode_audio_only, moving_gradient, write_pngs
from adapter_tests import AdapterTests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import neurep
import neurep.modalities as modalities
from neurep import metrics
from neurep.errors import FormatError, InputError, MissingDependencyError
from neurep.modalities import ArrayAdapter, ImageAdapter, resolve
from neurep.modalities import _video_io as video_io
from neurep.modalities.video import VideoAdapter

FRAMES, HEIGHT, WIDTH = 10, 24, 32
RNG = np.random.default_rng(7)
NTSC = Fraction(30000, 1001)

# name -> (suffix, encoder, fps, container format, with audio); what each file should report
FILES = {
    "mp4": (".mp4", "libx264", NTSC, None, True),
    "mkv": (".mkv", "libx264", Fraction(25), None, False),
    "webm": (".webm", "libvpx-vp9", Fraction(24), None, False),
    "avi": (".avi", "mpeg4", NTSC, None, False),
}
EXPECTED = {  # name -> (codec, pixel format, fps, ignored streams)
    "mp4": ("h264", "yuv420p", "30000/1001", ["audio"]),
    "mkv": ("h264", "yuv420p", "25/1", []),
    "webm": ("vp9", "yuv420p", "24/1", []),
    "avi": ("mpeg4", "yuv420p", "30000/1001", []),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The test files, written once: one clip per container, plus broken ones."""
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_gradient(FRAMES, HEIGHT, WIDTH)
    paths = {}
    for name, (suffix, codec, fps, container_format, audio) in FILES.items():
        path = folder / f"clip-{name}{suffix}"
        paths[name] = encode(
            path, frames, codec=codec, fps=fps, container_format=container_format, audio=audio
        )
    paths["audio-only"] = encode_audio_only(folder / "sound.m4a")
    whole = paths["mp4"].read_bytes()
    paths["truncated"] = folder / "truncated.mp4"
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    paths["truncated-faststart"] = folder / "truncated-faststart.mp4"
    indexed_first = encode(folder / "faststart.mp4", moving_gradient(30, 16, 16), faststart=True)
    whole = indexed_first.read_bytes()
    paths["truncated-faststart"].write_bytes(whole[: len(whole) // 2])
    paths["garbage"] = folder / "garbage.mp4"
    paths["garbage"].write_bytes(RNG.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return paths


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(signal: torch.Tensor) -> torch.Tensor:
    """A signal as float in [0, 1] (uint8 signals stand for value / 255)."""
    return signal.float() / 255 if signal.dtype == torch.uint8 else signal


# ---- the behaviour every adapter shares --------------------------------------------------------


def _numpy_case(name: str):
    shape = (6, 9, 11)
    return {
        "numpy-uint8-rgb": lambda: RNG.integers(0, 256, (*shape, 3), dtype=np.uint8),
        "numpy-uint8-gray": lambda: RNG.integers(0, 256, (*shape, 1), dtype=np.uint8),
        "numpy-uint16-rgb": lambda: RNG.integers(0, 65536, (*shape, 3), dtype=np.uint16),
        "numpy-float32-rgb": lambda: RNG.random((*shape, 3), dtype=np.float32) * 4 - 1,
        "numpy-float64-gray": lambda: RNG.random((*shape, 1)) * 1e3,
        "numpy-float32-constant": lambda: np.full((*shape, 3), 0.5, np.float32),
        "numpy-uint16-bigendian": lambda: RNG.integers(0, 65536, (*shape, 1)).astype(">u2"),
    }[name]()


def _torch_case(name: str):
    generator = torch.Generator().manual_seed(3)
    return {
        "torch-uint8-rgb": lambda: torch.randint(0, 256, (5, 3, 8, 10), dtype=torch.uint8),
        "torch-float32-gray": lambda: torch.rand(5, 1, 8, 10, generator=generator),
        "torch-uint16-rgb": lambda: torch.randint(0, 65536, (4, 3, 7, 9)).to(torch.uint16),
        "torch-bfloat16-rgb": lambda: torch.rand(4, 3, 6, 8).to(torch.bfloat16),
    }[name]()


NUMPY_CASES = [
    "numpy-uint8-rgb",
    "numpy-uint8-gray",
    "numpy-uint16-rgb",
    "numpy-float32-rgb",
    "numpy-float64-gray",
    "numpy-float32-constant",
    "numpy-uint16-bigendian",
]
TORCH_CASES = ["torch-uint8-rgb", "torch-float32-gray", "torch-uint16-rgb", "torch-bfloat16-rgb"]
FILE_CASES = [f"file-{name}" for name in FILES]


class TestVideoAdapter(AdapterTests):
    adapter_cls = VideoAdapter

    @pytest.fixture(params=NUMPY_CASES + TORCH_CASES + FILE_CASES)
    def case(self, request, clips):
        name = request.param
        if name.startswith("numpy"):
            return _numpy_case(name)
        if name.startswith("torch"):
            return _torch_case(name)
        return clips[name.removeprefix("file-")]

    def signature(self, obj):
        if isinstance(obj, torch.Tensor):
            return (torch.Tensor, tuple(obj.shape), str(obj.dtype))
        return (np.ndarray, tuple(obj.shape), obj.dtype.name)

    def expected_signature(self, original):
        if isinstance(original, Path):
            return (np.ndarray, (FRAMES, HEIGHT, WIDTH, 3), "uint8")
        return self.signature(original)

    def invalid_inputs(self):
        return [
            np.zeros((3, 4, 4, 2), np.uint8),  # two channels
            np.zeros((3, 4, 4, 4), np.uint8),  # RGBA
            np.zeros((3, 4, 4, 3), np.int32),
            np.zeros((3, 4, 4, 3), bool),
            np.zeros((3, 4, 4, 3), np.complex64),
            np.zeros((0, 4, 4, 3), np.uint8),  # no frames
            np.zeros((3, 1, 1, 3), np.uint8),  # one-pixel frames
            np.zeros((4, 4, 3), np.uint8),  # an image, forced to video
            np.array([np.nan, 0.0, 1.0, 2.0]).reshape(4, 1, 1, 1).repeat(2, axis=1),
            torch.zeros(3, 4, 4, 4),
            torch.zeros(3, 3, 4, 4, dtype=torch.int32),
            torch.zeros(3, 3, 4, 4, dtype=torch.complex64),
            "does-not-exist.mp4",
            object(),
        ]

    def foreign_objects(self):
        return [
            *super().foreign_objects(),
            "photo.png",
            "volume.npy",
            np.zeros((4, 4, 3), np.uint8),
            np.zeros((2, 2, 2, 2, 2), np.uint8),
            torch.zeros(3, 4, 4),
        ]

    # The shared tests assume float signals; 8-bit clips give uint8 ones (value / 255).

    def test_signal_is_float32_batch_channels_spatial_in_unit_range(self, case):
        adapter, signal = VideoAdapter.from_object(case)
        eight_bit = adapter.configuration.dtype == "uint8"
        assert signal.dtype == (torch.uint8 if eight_bit else torch.float32)
        assert signal.ndim == 4 and signal.shape[1] in (1, 3)
        unit = _unit(signal)
        assert torch.isfinite(unit).all() and unit.min() >= 0 and unit.max() <= 1

    def test_signal_uses_the_whole_unit_range_unless_constant(self, case):
        adapter, signal = VideoAdapter.from_object(case)
        values = adapter.as_array(case)
        low, high = adapter.configuration.value_range
        assert values.min() >= low and values.max() <= high
        unit = _unit(signal)
        if values.min() == values.max() == low:
            assert unit.max() == 0
        elif values.min() == low and values.max() == high:
            assert unit.min() == 0 and unit.max() == 1

    def test_from_signal_clips_to_the_recorded_range(self, case):
        adapter, signal = VideoAdapter.from_object(case)
        values = adapter.as_array(adapter.from_signal(_unit(signal) * 3.0 - 1.0))
        low, high = adapter.configuration.value_range
        assert values.min() >= low and values.max() <= high

    def test_quality_is_infinite_for_identity_and_finite_after_noise(self, case):
        adapter, signal, decoded = self.fit_identity(case)
        if self.round_trip_tolerance(adapter) == 0:
            assert adapter.quality(case, decoded)["psnr"] == math.inf
        unit = _unit(signal)
        generator = torch.Generator().manual_seed(0)
        noisy = unit + 0.2 * torch.randn(unit.shape, generator=generator)
        noisy[..., 0] = 1 - unit[..., 0]
        noisy_quality = adapter.quality(case, adapter.from_signal(noisy))
        if adapter.data_range > 0:
            assert math.isfinite(noisy_quality["psnr"])
            assert noisy_quality["psnr"] < adapter.quality(case, decoded)["psnr"]


# ---- choosing the adapter ----------------------------------------------------------------------


def test_four_d_arrays_and_tensors_are_video_while_lower_ranks_keep_their_modality():
    assert resolve(np.zeros((2, 4, 4, 3), np.uint8)) is VideoAdapter
    assert resolve(np.zeros((2, 4, 4, 7), np.float32)) is VideoAdapter  # refused later, clearly
    assert resolve(torch.zeros(2, 3, 4, 4)) is VideoAdapter
    assert resolve(np.zeros((4, 4, 3), np.uint8)) is ImageAdapter
    assert resolve(np.zeros((4, 5, 6), np.float32)) is ArrayAdapter
    assert resolve(torch.zeros(3, 4, 4)) is ImageAdapter
    for name in ("clip.mp4", "clip.MOV", "clip.mkv", "clip.avi", "clip.webm", "clip.m4v"):
        assert resolve(name) is VideoAdapter, name
    names = modalities.names()
    assert names.index("image") < names.index("video") < names.index("array")


def test_a_folder_is_video_only_when_asked_for(tmp_path):
    folder = write_pngs(tmp_path / "shots", moving_gradient(3, 8, 8), ["a.png", "b.png", "c.png"])
    assert not VideoAdapter.accepts(folder)
    with pytest.raises(InputError, match="cannot tell"):
        resolve(folder)
    adapter, signal = modalities.get("video").read(folder)
    assert adapter.configuration.kind == "folder" and signal.shape == (3, 3, 8, 8)


def test_files_without_a_suffix_are_recognised_by_content(clips, tmp_path):
    for name in ("mp4", "mkv", "avi"):
        bare = tmp_path / f"bare-{name}"
        shutil.copy(clips[name], bare)
        assert resolve(bare) is VideoAdapter, name
    assert not VideoAdapter.sniff(clips["garbage"])


def test_read_rejects_options_other_than_frames_and_size():
    clip = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(InputError, match="frames, size"):
        VideoAdapter.read(clip, fps=30)
    assert VideoAdapter.read(clip, frames="0:1", size="2x2")[1].shape == (1, 3, 2, 2)


# ---- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FILES))
def test_a_file_is_read_as_uint8_rgb_with_its_stream_described(clips, name):
    adapter, signal = VideoAdapter.from_object(clips[name])
    config = adapter.configuration
    assert signal.dtype == torch.uint8 and signal.shape == (FRAMES, 3, HEIGHT, WIDTH)
    assert (config.codec, config.pixel_format, config.fps, config.ignored_streams) == EXPECTED[name]
    assert config.kind == "file" and config.source == clips[name].name
    assert config.shape == [FRAMES, HEIGHT, WIDTH, 3] and config.frames == FRAMES
    assert config.frame_range == [0, FRAMES] and config.size is None
    assert adapter.num_pixels == FRAMES * HEIGHT * WIDTH
    assert adapter.preset_profile == "video"
    # the frames, in order, exactly as FFmpeg decodes them
    np.testing.assert_array_equal(signal.permute(0, 2, 3, 1).numpy(), decode_with_pyav(clips[name]))


def test_a_file_signal_is_a_view_of_one_uint8_buffer(clips):
    _, signal = VideoAdapter.from_object(clips["mkv"])
    # (T, C, H, W) over (T, H, W, C) storage: 1 byte a sample, no float copy
    assert signal.is_contiguous(memory_format=torch.channels_last)
    assert signal.untyped_storage().nbytes() == signal.numel()  # one byte a sample


def test_a_file_that_understates_its_frame_count_is_still_read_whole(clips, monkeypatch):
    expected = decode_with_pyav(clips["mp4"])
    monkeypatch.setattr(video_io, "_expected_frames", lambda *args: 1)  # the buffer must grow
    clip = video_io.read_video(clips["mp4"])
    np.testing.assert_array_equal(clip.frames, expected)


def test_decoded_file_frames_are_close_to_what_was_encoded(clips):
    _, signal = VideoAdapter.from_object(clips["mp4"])
    error = np.abs(signal.permute(0, 2, 3, 1).numpy().astype(int) - moving_gradient().astype(int))
    assert error.mean() < 8  # lossy H.264 of a tiny clip: close, frames in the right order


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ((2, 5), (2, 5)),
        (slice(3, 7), (3, 7)),
        ("4:9", (4, 9)),
        ("7:", (7, 10)),
        (":3", (0, 3)),
        ((6, None), (6, 10)),
        ((8, 100), (8, 10)),  # like a slice: cut at the end
        (" 1 : 2 ", (1, 2)),
    ],
)
def test_a_frame_range_reads_exactly_those_frames(clips, frames, expected):
    full = VideoAdapter.from_object(clips["mp4"])[1]
    adapter, signal = VideoAdapter.from_object(clips["mp4"], frames=frames)
    start, stop = expected
    torch.testing.assert_close(signal, full[start:stop], rtol=0, atol=0)
    assert adapter.configuration.frame_range == [start, stop]
    assert adapter.configuration.frames == stop - start
    array = moving_gradient()
    _, array_signal = VideoAdapter.from_object(array, frames=frames)
    np.testing.assert_array_equal(array_signal.permute(0, 2, 3, 1).numpy(), array[start:stop])


@pytest.mark.parametrize(
    "frames",
    ["5:5", "6:2", (3, 3), "-1:", ":-2", "a:b", "3", 3, slice(0, 4, 2), (True, 3), (1.5, 3), [1]],
)
def test_bad_frame_ranges_raise_input_error(frames):
    with pytest.raises(InputError, match="frames"):
        VideoAdapter.from_object(np.zeros((4, 4, 4, 3), np.uint8), frames=frames)


def test_a_frame_range_past_the_end_names_the_file(clips):
    with pytest.raises(InputError, match=r"clip-mp4\.mp4.*select no frames"):
        VideoAdapter.from_object(clips["mp4"], frames="20:")
    with pytest.raises(InputError, match="select none"):
        VideoAdapter.from_object(np.zeros((4, 4, 4, 3), np.uint8), frames="4:")


def test_size_resizes_every_frame_of_a_file(clips):
    adapter, signal = VideoAdapter.from_object(clips["webm"], size="16x12")
    assert signal.shape == (FRAMES, 3, 12, 16) and signal.dtype == torch.uint8
    assert adapter.configuration.size == [16, 12]
    assert adapter.configuration.shape == [FRAMES, 12, 16, 3]
    # FFmpeg's scaler, frame by frame, in order
    expected = decode_with_pyav(clips["webm"], size=(16, 12))
    np.testing.assert_array_equal(signal.permute(0, 2, 3, 1).numpy(), expected)
    decoded = adapter.from_signal(_unit(signal))
    assert decoded.shape == (FRAMES, 12, 16, 3)
    assert adapter.quality(clips["webm"], decoded)["psnr"] == math.inf


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_size_resizes_arrays_without_mixing_frames(dtype):
    levels = np.arange(5, dtype=np.float64)[:, None, None, None] * 40  # one level a frame
    clip = np.broadcast_to(levels, (5, 12, 20, 3)).astype(dtype)
    adapter, signal = VideoAdapter.from_object(clip, size=(10, 6))
    assert signal.shape == (5, 3, 6, 10)
    assert signal.dtype == (torch.uint8 if dtype == "uint8" else torch.float32)
    decoded = adapter.from_signal(_unit(signal))
    assert decoded.shape == (5, 6, 10, 3) and decoded.dtype == np.dtype(dtype)
    np.testing.assert_allclose(decoded[:, 0, 0, 0], levels.ravel(), atol=1e-3)
    assert adapter.quality(clip, decoded)["psnr"] == math.inf  # against the resized original


@pytest.mark.parametrize(
    "size", ["640", "0x10", "axb", (0, 5), (1, 1), (-2, 4), (2.5, 4), "99999x10", 7, (True, 4)]
)
def test_bad_sizes_raise_input_error(size):
    with pytest.raises(InputError, match="size"):
        VideoAdapter.from_object(np.zeros((2, 4, 4, 3), np.uint8), size=size)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("audio-only", "no video stream"),
        ("truncated", "no video stream.*truncated"),  # the index (at the end) is cut off
        ("truncated-faststart", "damaged or truncated"),  # the frames are cut off
        ("garbage", "cannot be read|damaged|no video stream"),
    ],
)
def test_unusable_files_raise_input_error_naming_them(clips, name, problem):
    with pytest.raises(InputError, match=problem) as caught:
        VideoAdapter.from_object(clips[name])
    assert clips[name].name in str(caught.value)


def test_a_missing_path_is_reported(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.mp4: no such file"):
        VideoAdapter.from_object(tmp_path / "nothing.mp4")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=st.sampled_from(
        [b"", b"\x00\x00\x00\x18ftypisom", b"\x1a\x45\xdf\xa3", b"RIFF\0\0\0\0AVI "]
    ),
    body=st.binary(max_size=3000),
)
def test_hostile_files_raise_input_error_and_nothing_else(tmp_path_factory, head, body):
    path = tmp_path_factory.mktemp("hostile") / "hostile.mp4"
    path.write_bytes(head + body)
    try:
        adapter, signal = VideoAdapter.from_object(path)
    except InputError as error:
        assert "hostile.mp4" in str(error)
        return
    # FFmpeg found frames in it: then it is a well-formed clip
    assert signal.dtype == torch.uint8 and signal.shape[0] == adapter.configuration.frames


# ---- folders -----------------------------------------------------------------------------------


def test_a_folder_is_read_in_natural_order_ignoring_other_files(tmp_path):
    levels = np.arange(12) * 20
    frames = np.broadcast_to(levels[:, None, None, None], (12, 6, 8, 3)).astype(np.uint8)
    names = [f"frame{index}.png" for index in range(12)]  # frame10 sorts after frame9
    folder = write_pngs(tmp_path / "shots", frames, names)
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"junk")
    adapter, signal = VideoAdapter.from_object(folder, frames="1:")
    np.testing.assert_array_equal(signal[:, 0, 0, 0].numpy(), levels[1:])
    config = adapter.configuration
    assert (config.kind, config.source, config.fps, config.codec) == (
        "folder",
        "shots",
        "25/1",
        None,
    )
    assert config.shape == [11, 6, 8, 3] and config.frame_range == [1, 12]
    np.testing.assert_array_equal(adapter.from_signal(_unit(signal)), frames[1:])


def test_a_folder_of_gray_frames_has_one_channel(tmp_path):
    frames = RNG.integers(0, 256, (3, 5, 7, 1), dtype=np.uint8)
    folder = write_pngs(tmp_path / "gray", frames, ["1.png", "2.png", "3.png"])
    adapter, signal = VideoAdapter.from_object(folder)
    assert signal.shape == (3, 1, 5, 7) and adapter.configuration.channels == 1
    np.testing.assert_array_equal(adapter.from_signal(signal), frames)


def test_folder_frames_of_different_sizes_need_a_size(tmp_path):
    folder = write_pngs(tmp_path / "mixed", moving_gradient(1, 8, 8), ["a.png"])
    Image.fromarray(moving_gradient(1, 6, 8)[0]).save(folder / "b.png")
    with pytest.raises(InputError, match=r"b\.png.*a\.png.*one size"):
        VideoAdapter.from_object(folder)
    assert VideoAdapter.from_object(folder, size=(4, 4))[1].shape == (2, 3, 4, 4)


def test_unusable_folders_raise_input_error_naming_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: holds no frame images"):
        VideoAdapter.from_object(empty)
    (empty / "readme.txt").write_text("no frames here")
    with pytest.raises(InputError, match="holds no frame images"):
        VideoAdapter.from_object(empty)
    broken = write_pngs(tmp_path / "broken", moving_gradient(1, 4, 4), ["a.png"])
    (broken / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"b\.png"):
        VideoAdapter.from_object(broken)
    deep = tmp_path / "deep"
    deep.mkdir()
    pixels = RNG.integers(0, 65536, (4, 4), dtype=np.uint16)
    Image.frombytes("I;16", (4, 4), pixels.astype("<u2").tobytes()).save(deep / "a.png")
    with pytest.raises(InputError, match=r"a\.png.*16-bit"):
        VideoAdapter.from_object(deep)


def test_natural_order_compares_digit_runs_by_value():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b.png", "frame100.png"]
    ordered = sorted(names, key=video_io.natural_key)
    assert ordered == ["Frame1.png", "frame2.png", "frame2b.png", "frame10.png", "frame100.png"]


# ---- arrays and tensors ------------------------------------------------------------------------


def test_uint8_clips_round_trip_exactly_through_a_float_signal():
    clip = RNG.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    adapter, signal = VideoAdapter.from_object(clip)
    assert signal.dtype == torch.uint8
    assert signal.data_ptr() == clip.ctypes.data  # the user's array, not a copy
    np.testing.assert_array_equal(adapter.from_signal(signal.float() / 255), clip)
    tensor = torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()
    adapter, signal = VideoAdapter.from_object(tensor)
    restored = adapter.from_signal(signal.float() / 255)
    assert restored.dtype == torch.uint8 and torch.equal(restored, tensor)


def test_uint16_scales_by_65535_and_floats_by_their_min_max():
    deep = np.array([0, 13107, 65535, 1], np.uint16).reshape(2, 1, 2, 1)
    adapter, signal = VideoAdapter.from_object(deep)
    np.testing.assert_allclose(signal.numpy().ravel(), [0, 0.2, 1, 1 / 65535], rtol=1e-6)
    np.testing.assert_array_equal(adapter.from_signal(signal), deep)
    floats = np.array([-2.0, 0.0, 1.0, 6.0]).reshape(2, 1, 2, 1)
    adapter, signal = VideoAdapter.from_object(floats)
    assert adapter.configuration.value_range == [-2.0, 6.0]
    np.testing.assert_allclose(signal.numpy().ravel(), [0, 0.25, 0.375, 1])
    np.testing.assert_allclose(adapter.from_signal(signal), floats, atol=1e-6)


def test_a_decode_of_some_frames_has_those_frames_only():
    clip = RNG.random((6, 4, 5, 3))
    adapter, signal = VideoAdapter.from_object(clip)
    part = adapter.from_signal(signal[2:4])
    assert part.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(part, clip[2:4], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        adapter.from_signal(torch.cat([signal, signal[:1]]))  # more frames than the clip
    with pytest.raises(ValueError, match="shape"):
        adapter.from_signal(signal[:0])


def test_configuration_survives_json_and_keeps_the_read_options(clips):
    adapter, signal = VideoAdapter.from_object(clips["mp4"], frames="2:6", size="16x12")
    config = adapter.to_config()
    rebuilt = VideoAdapter.from_config(json.loads(json.dumps(config, allow_nan=False)))
    assert rebuilt.to_config() == config
    assert config["configuration"]["frame_range"] == [2, 6]
    assert config["configuration"]["size"] == [16, 12]
    np.testing.assert_array_equal(rebuilt.from_signal(signal), adapter.from_signal(signal))


# ---- hostile configurations --------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


def _valid_configuration() -> dict:
    adapter, _ = VideoAdapter.from_object(np.zeros((3, 4, 6, 3), np.float32) + np.arange(3))
    return adapter.to_config()


def _usable(config: dict) -> None:
    """from_config either refuses ``config`` with FormatError or decodes a signal of its shape."""
    try:
        adapter = VideoAdapter.from_config(config)
    except FormatError:
        return
    frames, channels, height, width = adapter._tchw
    decoded = adapter.from_signal(torch.full((frames, channels, height, width), 0.5))
    assert tuple(decoded.shape) == tuple(adapter.configuration.shape)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(list(_valid_configuration()["configuration"])), value=JSON_VALUES)
def test_a_hostile_field_is_refused_with_format_error(field, value):
    config = _valid_configuration()
    config["configuration"][field] = value
    _usable(config)


@settings(max_examples=100, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=14), JSON_VALUES, max_size=14))
def test_a_random_configuration_is_refused_with_format_error(fields):
    with pytest.raises(FormatError):
        VideoAdapter.from_config({"name": "video", "configuration": fields})


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("shape", [3, 4, 6, 3, 1], "shape"),
        ("shape", [3, -4, 6, 3], "shape"),
        ("shape", [3, 4, 2**40, 3], "too large"),
        ("frames", 4, "frames"),
        ("channels", 2, "channel"),
        ("fps", "30000/0", "fps"),
        ("fps", "thirty", "fps"),
        ("fps", "-25/1", "fps"),
        ("frame_range", [2, 1], "frame_range"),
        ("frame_range", [0, 7], "frame_range"),
        ("size", [6, 5], "size"),
        ("size", "6x4", "size"),
        ("value_range", [1.0], "value_range"),
        ("value_range", [3.0, "x"], "value_range"),
        ("dtype", "int32", "dtype"),
        ("kind", "hologram", "kind"),
        ("ignored_streams", [7], "ignored_streams"),
        ("source", 12, "source"),
    ],
)
def test_specific_hostile_values_are_named_in_the_format_error(field, value, problem):
    config = _valid_configuration()
    config["configuration"][field] = value
    with pytest.raises(FormatError, match=problem):
        VideoAdapter.from_config(config)


def test_a_file_configuration_must_be_8_bit_rgb(clips):
    config = VideoAdapter.from_object(clips["mkv"])[0].to_config()
    for field, value in [("dtype", "float32"), ("value_range", [0, 1]), ("channels", 1)]:
        broken = json.loads(json.dumps(config))
        broken["configuration"][field] = value
        with pytest.raises(FormatError):
            VideoAdapter.from_config(broken)


# ---- PyAV is optional --------------------------------------------------------------------------


def test_without_pyav_files_raise_missing_dependency_and_arrays_still_work(clips, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'neurep\[video\]'"):
        VideoAdapter.from_object(clips["mp4"])
    with pytest.raises(MissingDependencyError, match="neurep"):
        video_io.write_video(moving_gradient(2, 4, 4), clips["mp4"].parent / "x.mp4", "25/1")
    assert VideoAdapter.from_object(np.zeros((2, 4, 4, 3), np.uint8))[1].shape == (2, 3, 4, 4)


@pytest.mark.parametrize("module", ["video.py", "_video_io.py"])
def test_the_video_modules_import_pyav_only_inside_functions(module):
    source = (Path(modalities.__file__).parent / module).read_text()
    for node in ast.parse(source).body:  # module-level statements only
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None)]
            assert "av" not in names, ast.dump(node)


# ---- quality -----------------------------------------------------------------------------------


def test_quality_of_an_identical_clip_is_infinite_without_crashing(clips):
    adapter, signal = VideoAdapter.from_object(clips["avi"])
    decoded = adapter.from_signal(_unit(signal))
    del signal  # from_object's frames are gone: quality reads the file again
    quality = adapter.quality(clips["avi"], decoded)
    assert quality["psnr"] == math.inf and quality["ms_ssim"] == pytest.approx(1.0)
    assert quality["psnr_frames"] == {"mean": math.inf, "min": math.inf}


def test_quality_of_known_errors_matches_the_textbook_formulas():
    original = np.full((3, 16, 16, 3), 100, np.uint8)
    decoded = original.copy()
    decoded[1] += 2  # frame MSEs 0, 4, 16
    decoded[2] += 4
    adapter, _ = VideoAdapter.from_object(original)
    quality = adapter.quality(original, decoded)
    mse = np.mean((original.astype(np.float64) - decoded) ** 2)
    assert mse == pytest.approx(20 / 3)
    assert quality["psnr"] == pytest.approx(10 * math.log10(255**2 / mse))
    frame_1, frame_2 = (10 * math.log10(255**2 / m) for m in (4, 16))
    assert quality["psnr_frames"]["mean"] == pytest.approx((frame_1 + frame_2) / 2)  # finite ones
    assert quality["psnr_frames"]["min"] == pytest.approx(frame_2)


def test_quality_of_noise_matches_whole_clip_psnr_and_per_frame_ssim():
    generator = np.random.default_rng(11)
    original = generator.random((5, 20, 24, 3)).astype(np.float32) * 10 - 5
    adapter, signal = VideoAdapter.from_object(original)
    decoded = adapter.from_signal(_unit(signal) + 0.05 * torch.randn(signal.shape))
    quality = adapter.quality(original, decoded)
    data_range = float(original.max()) - float(original.min())
    assert quality["psnr"] == pytest.approx(metrics.psnr(original, decoded, data_range), abs=1e-9)
    frame_ssim = [
        metrics.ms_ssim(
            original[t].transpose(2, 0, 1) - original.min(),
            decoded[t].transpose(2, 0, 1) - original.min(),
            data_range,
        )
        for t in range(5)
    ]
    assert quality["ms_ssim"] == pytest.approx(np.mean(frame_ssim), rel=1e-9)
    assert quality["psnr_frames"]["min"] <= quality["psnr_frames"]["mean"] < math.inf


def test_quality_skips_ssim_for_frames_too_small_for_it():
    clip = RNG.integers(0, 256, (3, 2, 9, 1), dtype=np.uint8)
    adapter, signal = VideoAdapter.from_object(clip)
    quality = adapter.quality(clip, adapter.from_signal(signal))
    assert quality["ms_ssim"] is None and quality["psnr"] == math.inf


def test_quality_of_a_frame_range_compares_the_frames_that_were_fitted():
    clip = RNG.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    adapter, signal = VideoAdapter.from_object(clip, frames="2:6")
    decoded = adapter.from_signal(signal)
    np.testing.assert_array_equal(decoded, clip[2:6])
    assert adapter.quality(clip, decoded)["psnr"] == math.inf
    with pytest.raises(ValueError, match="differs"):
        adapter.quality(clip, decoded[:3])


# ---- writing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"])
@pytest.mark.parametrize(("height", "width"), [(24, 32), (15, 21)])
def test_write_video_keeps_frame_count_size_and_exact_fps(tmp_path, suffix, height, width):
    frames = moving_gradient(6, height, width)[..., [0, 0, 0]]  # gray: 4:2:0 keeps it whole
    path = tmp_path / f"out{suffix}"
    video_io.write_video(frames, path, "30000/1001")
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]  # no temporary left
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == NTSC
        assert (stream.width, stream.height) == (width, height)
    decoded = decode_with_pyav(path)
    assert decoded.shape == frames.shape
    assert metrics.psnr(frames, decoded, 255) > 38  # visually lossless


def test_write_video_takes_gray_frames_and_a_fraction(tmp_path):
    frames = np.broadcast_to(np.arange(4)[:, None, None, None] * 60, (4, 8, 8, 1))
    path = tmp_path / "gray.mp4"
    video_io.write_video(frames.astype(np.uint8), path, Fraction(25))
    adapter, signal = VideoAdapter.from_object(path)
    assert adapter.configuration.fps == "25/1"
    np.testing.assert_allclose(signal[:, 0, 4, 4].numpy(), [0, 60, 120, 180], atol=3)


def test_write_video_refuses_bad_arguments_before_writing(tmp_path):
    frames = moving_gradient(2, 8, 8)
    with pytest.raises(ValueError, match="suffix"):
        video_io.write_video(frames, tmp_path / "clip.gifv", "25/1")
    with pytest.raises(ValueError, match="fps"):
        video_io.write_video(frames, tmp_path / "clip.mp4", "fast")
    with pytest.raises(ValueError, match="fps"):
        video_io.write_video(frames, tmp_path / "clip.mp4", "0/1")
    with pytest.raises(ValueError, match="uint8"):
        video_io.write_video(frames.astype(np.float32), tmp_path / "clip.mp4", "25/1")
    with pytest.raises(ValueError, match="shape"):
        video_io.write_video(frames[..., :2], tmp_path / "clip.mp4", "25/1")
    with pytest.raises((OSError, av.FFmpegError)):
        video_io.write_video(frames, tmp_path / "missing" / "clip.mp4", "25/1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failing_step", ["encoding", "renaming"])
def test_a_failed_write_video_leaves_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, failing_step
):
    path = tmp_path / "clip.mkv"
    video_io.write_video(moving_gradient(3, 8, 8), path, "25/1")
    before = path.read_bytes()
    if failing_step == "encoding":  # after some frames: the temporary file exists by then
        original = av.VideoFrame.from_ndarray
        calls = []

        def failing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 60:
                raise RuntimeError("disk full")
            return original(*args, **kwargs)

        monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing)
    else:

        def failing(source, destination):
            assert Path(source).stat().st_size > 0  # the temporary was written
            raise RuntimeError("disk full")

        monkeypatch.setattr(video_io.os, "replace", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        video_io.write_video(moving_gradient(80, 8, 8), path, "25/1")
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["clip.mkv"]


def test_write_frames_writes_numbered_pngs_that_read_back_exactly(tmp_path):
    frames = moving_gradient(12, 6, 8)
    paths = video_io.write_frames(frames, tmp_path / "out" / "frames")
    assert [path.name for path in paths] == [f"frame_{index:05d}.png" for index in range(12)]
    assert sorted(path.name for path in (tmp_path / "out" / "frames").iterdir()) == [
        path.name for path in paths
    ]
    assert [entry.name for entry in (tmp_path / "out").iterdir()] == ["frames"]
    adapter, signal = VideoAdapter.from_object(tmp_path / "out" / "frames")
    np.testing.assert_array_equal(adapter.from_signal(signal), frames)  # PNG is lossless
    gray = video_io.write_frames(frames[..., :1], tmp_path / "gray")
    with Image.open(gray[0]) as image:
        assert image.mode == "L"


def test_write_frames_refuses_a_full_folder_unless_overwriting(tmp_path):
    folder = tmp_path / "frames"
    video_io.write_frames(moving_gradient(4, 4, 4), folder)
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        video_io.write_frames(moving_gradient(2, 4, 4), folder)
    video_io.write_frames(moving_gradient(2, 4, 4), folder, overwrite=True)
    names = sorted(entry.name for entry in folder.iterdir())
    assert names == ["frame_00000.png", "frame_00001.png", "keep.txt"]  # stale frames gone


def test_a_write_frames_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    original = Image.Image.save
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing)
    with pytest.raises(OSError, match="disk full"):
        video_io.write_frames(moving_gradient(5, 4, 4), tmp_path / "frames")
    assert list(tmp_path.iterdir()) == []


# ---- end to end --------------------------------------------------------------------------------


def test_a_fitted_clip_decodes_to_the_same_kind_and_survives_its_file(clips, tmp_path):
    datum = neurep.fit(clips["mp4"], frames="1:3", steps=2, preset="fast", progress=False)
    decoded = datum.decode()
    assert decoded.shape == (2, HEIGHT, WIDTH, 3) and decoded.dtype == np.uint8
    assert datum.metadata["modality"]["configuration"]["frame_range"] == [1, 3]
    quality = datum.metadata["quality"]
    assert quality["psnr_frames"]["min"] <= quality["psnr_frames"]["mean"]
    path = tmp_path / "clip.nrep"
    datum.save(path)
    loaded = neurep.load(path)
    np.testing.assert_array_equal(loaded.decode(), decoded)
    np.testing.assert_array_equal(loaded.decode(slice(1, 2)), decoded[1:2])
