"""``neurep fit`` / ``decode`` / ``info`` on video: files, frame folders, frame ranges, sizes."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from _clips import encode, moving_gradient
from PIL import Image

import neurep
from neurep.cli import decode, fit, info
from neurep.formats import write_nrep
from neurep.modalities import _video_io

torch.set_num_threads(1)  # tiny clips: threads cost more than they give

FRAMES, HEIGHT, WIDTH = 8, 24, 32
NTSC = Fraction(30000, 1001)
FAST = ["--preset", "fast", "--epochs", "1"]  # 8 frames, one a step: 8 steps


def _read_video(path) -> tuple[np.ndarray, Fraction, str]:
    """Every frame of ``path`` as (T, H, W, 3) uint8, the stream's rate and codec."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, Fraction(stream.average_rate), stream.codec_context.name


def _assert_close_video(frames: np.ndarray, decoded: np.ndarray) -> None:
    """``frames`` read back from a visually lossless H.264/VP9 file of ``decoded``: the luma
    and each frame's mean colour match (4:2:0 blurs the chroma of a noisy decode, so pixels
    are not compared one by one); a channel swap or a flip breaks both."""
    frames, decoded = frames.astype(np.float64), decoded.astype(np.float64)
    luma = np.array([0.299, 0.587, 0.114])
    assert np.abs(frames @ luma - decoded @ luma).mean() < 3.0
    colours = np.abs(frames.mean(axis=(1, 2)) - decoded.mean(axis=(1, 2)))
    assert colours.max() < 4.0


def _run(module, argv) -> tuple[int, str, str]:
    """``module.main(argv)`` with stdout and stderr captured (usable in module fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def _assert_one_error_line(capsys, *fragments):
    captured = capsys.readouterr()
    assert captured.err.startswith("neurep: error: "), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err, captured.err


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """An 8-frame 32x24 H.264 clip at 30000/1001 fps, its fit, the fit's summary line and
    the full decode (through ``.npy``)."""
    folder = tmp_path_factory.mktemp("video")
    source = folder / "clip.mp4"
    encode(source, moving_gradient(FRAMES, HEIGHT, WIDTH), fps=NTSC)
    nrep = folder / "clip.nrep"
    code, out, err = _run(fit, [source, "-o", nrep, *FAST])
    assert code == 0, err
    full = folder / "full.npy"
    assert _run(decode, [nrep, "-o", full, "-q"])[0] == 0
    return {"source": source, "nrep": nrep, "summary": out, "full": np.load(full)}


@pytest.fixture(scope="module")
def image_nrep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image")
    source = folder / "picture.png"
    Image.fromarray(moving_gradient(1, 16, 24)[0]).save(source)
    nrep = folder / "picture.nrep"
    assert _run(fit, [source, "-o", nrep, "--steps", "1", "-q"])[0] == 0
    return source, nrep


# ---- fit ---------------------------------------------------------------------------------------


def test_fit_of_a_video_file_records_the_clip_and_prints_frames_and_bpp(clip):
    nrep = clip["nrep"]
    metadata = neurep.open(nrep).metadata
    config = metadata["modality"]["configuration"]
    assert metadata["modality"]["name"] == "video"
    assert config["shape"] == [FRAMES, HEIGHT, WIDTH, 3] and config["fps"] == "30000/1001"
    assert config["kind"] == "file" and config["codec"] == "h264"
    assert metadata["fit"]["steps"] == FRAMES  # --epochs 1 of one frame a step, not fast's 10
    file_bytes = nrep.stat().st_size
    bpp = file_bytes * 8 / (FRAMES * HEIGHT * WIDTH)
    summary = clip["summary"]
    assert summary.count("\n") == 1
    assert f"8 frames {WIDTH}x{HEIGHT} at 30000/1001 fps (29.97)" in summary
    assert f"{file_bytes:,} bytes, {bpp:.4f} bpp" in summary
    assert "PSNR" in summary and "per-frame PSNR mean" in summary


def test_fit_frames_and_size_reach_the_reader(clip, tmp_path):
    nrep = tmp_path / "part.nrep"
    argv = [clip["source"], "-o", nrep, *FAST, "--frames", "2:6", "--size", "16x12", "-q"]
    assert _run(fit, argv)[0] == 0
    config = neurep.open(nrep).metadata["modality"]["configuration"]
    assert config["frame_range"] == [2, 6] and config["size"] == [16, 12]
    assert config["shape"] == [4, 12, 16, 3] and config["frames"] == 4
    assert neurep.load(nrep).decode().shape == (4, 12, 16, 3)


def test_fit_a_folder_of_frames_needs_modality_video(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, pixels in enumerate(moving_gradient(4, 12, 16)):
        Image.fromarray(pixels).save(frames / f"f{index}.png")
    nrep = tmp_path / "folder.nrep"
    assert fit.main([str(frames), "-o", str(nrep), "-q"]) == 1
    _assert_one_error_line(capsys, "frames", "--modality video")
    assert not nrep.exists()
    argv = [frames, "-o", nrep, "--modality", "video", *FAST, "-q"]
    assert _run(fit, argv)[0] == 0
    config = neurep.open(nrep).metadata["modality"]["configuration"]
    assert config["kind"] == "folder" and config["shape"] == [4, 12, 16, 3]
    assert config["fps"] == "25/1"


def test_fit_refuses_video_options_for_an_image(image_nrep, tmp_path, capsys):
    source, _ = image_nrep
    target = tmp_path / "x.nrep"
    assert fit.main([str(source), "-o", str(target), "--frames", "0:1", "-q"]) == 1
    _assert_one_error_line(capsys, "image", "'frames'")
    assert fit.main([str(source), "-o", str(target), "--size", "8x8", "-q"]) == 1
    _assert_one_error_line(capsys, "image", "'size'")
    assert not target.exists()


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--size", "big", "WIDTHxHEIGHT"),
        ("--size", "0x10", "1 to"),
        ("--frames", "5:2", "selects no frames"),
        ("--frames", "-3:", "start:stop"),
        ("--epochs", "0", "not positive"),
    ],
)
def test_fit_bad_video_options_are_usage_errors(clip, tmp_path, capsys, option, value, fragment):
    target = tmp_path / "x.nrep"
    assert fit.main([str(clip["source"]), "-o", str(target), f"{option}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and fragment in err and "Traceback" not in err
    assert not target.exists()


def test_fit_steps_and_epochs_cannot_be_combined(clip, tmp_path, capsys):
    argv = [str(clip["source"]), "-o", str(tmp_path / "x.nrep"), "--steps", "3", "--epochs", "1"]
    assert fit.main(argv) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_fit_refuses_a_missing_video(tmp_path, capsys):
    target = tmp_path / "x.nrep"
    assert fit.main([str(tmp_path / "absent.mp4"), "-o", str(target)]) == 1
    _assert_one_error_line(capsys, "absent.mp4", "no such file")
    assert not target.exists()


# ---- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_decode_to_a_video_file_keeps_frames_size_and_exact_fps(clip, tmp_path, suffix, capsys):
    output = tmp_path / f"back{suffix}"
    assert decode.main([str(clip["nrep"]), "-o", str(output)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(output) in out
    assert f"8 frames, {WIDTH}x{HEIGHT}, 30000/1001 fps (29.97)" in out
    frames, rate, codec = _read_video(output)
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert rate == NTSC and codec == "h264"
    _assert_close_video(frames, clip["full"])
    assert sorted(path.name for path in tmp_path.iterdir()) == [output.name]  # no temporaries


def test_decode_frames_to_video_writes_only_that_range(clip, tmp_path):
    output = tmp_path / "part.webm"
    assert decode.main([str(clip["nrep"]), "-o", str(output), "--frames", "5:", "-q"]) == 0
    frames, rate, codec = _read_video(output)
    assert frames.shape == (3, HEIGHT, WIDTH, 3) and rate == NTSC and codec == "vp9"
    _assert_close_video(frames, clip["full"][5:])


@pytest.mark.parametrize("form", ["slash", "existing", "bare"])
def test_decode_to_a_folder_writes_one_png_a_frame(clip, tmp_path, form):
    folder = tmp_path / "frames"
    if form == "existing":
        folder.mkdir()
    argument = f"{folder}/" if form == "slash" else str(folder)
    assert decode.main([str(clip["nrep"]), "-o", argument, "-q"]) == 0
    names = sorted(path.name for path in folder.iterdir())
    assert names == [f"frame_{index:05d}.png" for index in range(FRAMES)]
    for index, name in enumerate(names):
        pixels = np.asarray(Image.open(folder / name))
        assert pixels.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(pixels, clip["full"][index])  # PNG is exact
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"]  # no temporaries


def test_decode_frames_equals_the_rows_of_the_full_decode(clip, tmp_path, capsys):
    output = tmp_path / "part.npy"
    assert decode.main([str(clip["nrep"]), "-o", str(output), "--frames", "2:5"]) == 0
    assert "3 frames (2:5 of 8)" in capsys.readouterr().out
    part = np.load(output)
    assert part.shape == (3, HEIGHT, WIDTH, 3) and part.dtype == np.uint8
    np.testing.assert_array_equal(part, clip["full"][2:5])
    assert not np.array_equal(part, clip["full"][:3])  # the frames differ: a shift shows
    assert decode.main([str(clip["nrep"]), "-o", str(output), "--frames", ":100", "-q"]) == 0
    np.testing.assert_array_equal(np.load(output), clip["full"])  # stop past the end: all


def test_decode_into_a_non_empty_folder_needs_overwrite(clip, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(folder / "frame_00009.png")  # stale
    assert decode.main([str(clip["nrep"]), "-o", str(folder)]) == 1
    _assert_one_error_line(capsys, str(folder), "--overwrite")
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00009.png", "notes.txt"]
    assert decode.main([str(clip["nrep"]), "-o", str(folder), "--overwrite", "-q"]) == 0
    expected = [f"frame_{index:05d}.png" for index in range(FRAMES)] + ["notes.txt"]
    assert sorted(p.name for p in folder.iterdir()) == expected
    assert (folder / "notes.txt").read_text() == "keep me"


def test_decode_of_a_float_torch_clip_scales_its_value_range_to_8_bits(tmp_path, capsys):
    generator = torch.Generator().manual_seed(3)
    values = torch.rand(4, 1, 16, 24, generator=generator) * 6.0 - 2.0  # T, C, H, W float32
    datum = neurep.fit(values, preset="fast", epochs=1, progress=False)
    nrep = tmp_path / "tensor.nrep"
    datum.save(nrep)
    decoded = neurep.load(nrep).decode()  # (4, 1, 16, 24) float32 tensor
    low, high = datum.metadata["modality"]["configuration"]["value_range"]
    expected = np.rint((decoded.numpy() - low) / (high - low) * 255).clip(0, 255)
    expected = expected.astype(np.uint8).transpose(0, 2, 3, 1)  # T, H, W, C
    folder = tmp_path / "frames"
    assert decode.main([str(nrep), "-o", f"{folder}/"]) == 0
    out = capsys.readouterr().out
    assert "float32 scaled to 8 bits" in out and "4 frames, 24x16" in out
    for index in range(4):
        pixels = np.asarray(Image.open(folder / f"frame_{index:05d}.png"))
        np.testing.assert_array_equal(pixels, expected[index, :, :, 0])
    assert decode.main([str(nrep), "-o", str(tmp_path / "exact.npy"), "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "exact.npy"), decoded.numpy())
    assert decode.main([str(nrep), "-o", str(tmp_path / "gray.mp4"), "-q"]) == 0
    assert _read_video(tmp_path / "gray.mp4")[0].shape == (4, 16, 24, 3)


def test_a_failing_encoder_leaves_no_file(clip, tmp_path, monkeypatch, capsys):
    def broken(av_module, thwc, path, *args):
        path.write_bytes(b"half a video")
        raise ValueError("encoder exploded")

    monkeypatch.setattr(_video_io, "_encode", broken)
    output = tmp_path / "broken.mp4"
    assert decode.main([str(clip["nrep"]), "-o", str(output)]) == 1
    _assert_one_error_line(capsys, "broken.mp4", "encoder exploded")
    assert list(tmp_path.iterdir()) == []


def test_decode_refuses_frames_for_an_image_datum(image_nrep, tmp_path, capsys):
    _, nrep = image_nrep
    output = tmp_path / "out.npy"
    assert decode.main([str(nrep), "-o", str(output), "--frames", "0:1"]) == 1
    _assert_one_error_line(capsys, "--frames", "image")
    assert not output.exists()


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "frames/"])
def test_decode_refuses_video_outputs_for_an_image_datum(image_nrep, tmp_path, capsys, name):
    _, nrep = image_nrep
    assert decode.main([str(nrep), "-o", f"{tmp_path}/{name}"]) == 1  # keeps a trailing /
    _assert_one_error_line(capsys, "image", ".png")
    assert list(tmp_path.iterdir()) == []


def test_decode_refuses_image_suffixes_and_empty_ranges_for_a_video(clip, tmp_path, capsys):
    nrep = str(clip["nrep"])
    assert decode.main([nrep, "-o", str(tmp_path / "out.png")]) == 1
    _assert_one_error_line(capsys, "out.png", ".mp4", "folder")
    assert decode.main([nrep, "-o", str(tmp_path / "out.mp4"), "--frames", "8:"]) == 1
    _assert_one_error_line(capsys, "clip.nrep", "none of its 8 frames")
    assert decode.main([nrep, "-o", str(tmp_path / "out.mp4"), "--frames", "x"]) == 2
    assert "argument --frames" in capsys.readouterr().err
    assert decode.main([nrep, "-o", f"{tmp_path}/no/dir/frames/"]) == 1
    _assert_one_error_line(capsys, "no such directory")
    assert list(tmp_path.iterdir()) == []


def test_decode_refuses_a_file_whose_clip_and_signal_disagree(clip, tmp_path, capsys):
    reader = neurep.open(clip["nrep"])
    metadata = copy.deepcopy(reader.metadata)
    for written_by_the_writer in ("format", "format_version", "library", "created"):
        metadata.pop(written_by_the_writer, None)
    configuration = metadata["modality"]["configuration"]
    configuration.update(frames=6, shape=[6, HEIGHT, WIDTH, 3], frame_range=[0, 6])
    tampered = tmp_path / "tampered.nrep"
    embedding = reader.read_array("embedding", slice(None))
    write_nrep(
        tampered, metadata=metadata, arrays={"embedding": embedding}, tensors=reader.read_tensors()
    )
    output = tmp_path / "out.mp4"
    assert decode.main([str(tampered), "-o", str(output)]) == 1
    _assert_one_error_line(capsys, "tampered.nrep", "inconsistent metadata")
    assert not output.exists()


def test_decode_refuses_a_missing_input(tmp_path, capsys):
    output = tmp_path / "out.mp4"
    assert decode.main([str(tmp_path / "absent.nrep"), "-o", str(output)]) == 1
    _assert_one_error_line(capsys, "absent.nrep", "no such file")
    assert not output.exists()


# ---- info --------------------------------------------------------------------------------------


def test_info_of_a_fitted_clip_gives_frames_fps_resolution_duration_and_bpp(clip, capsys):
    nrep = clip["nrep"]
    file_bytes = nrep.stat().st_size
    pixels = FRAMES * HEIGHT * WIDTH
    assert info.main([str(nrep)]) == 0
    out = capsys.readouterr().out
    assert f"8 frames, {WIDTH}x{HEIGHT}, 30000/1001 fps (29.97), 0.267 s" in out
    bpp = file_bytes * 8 / pixels
    assert f"{bpp:.4f} bpp (8 frames x {WIDTH}x{HEIGHT} = {pixels:,} pixels)" in out
    assert "clip.mp4: h264 yuv420p, frames 0:8, ignored streams: none" in out
    assert "per-frame PSNR mean " in out and " dB, min " in out
    assert info.main([str(nrep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    quality = report["metadata"]["quality"]
    assert report["num_pixels"] == pixels
    assert report["bpp"] == pytest.approx(file_bytes * 8 / pixels)
    assert report["psnr"] == quality["psnr"] and report["ms_ssim"] == quality["ms_ssim"]
    video = report["video"]
    assert video["frames"] == FRAMES and video["fps"] == "30000/1001"
    assert video["fps_decimal"] == pytest.approx(30000 / 1001)
    assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
    assert video["duration_s"] == pytest.approx(FRAMES * 1001 / 30000)
    assert video["psnr_frames_min"] == quality["psnr_frames"]["min"]
    assert video["psnr_frames_mean"] == quality["psnr_frames"]["mean"]
    assert video["psnr_frames_min"] <= video["psnr_frames_mean"]


def _video_nrep(path, configuration, quality):
    """A .nrep whose metadata describes a video (weights and embedding are placeholders:
    ``neurep info`` reads only the metadata)."""
    frames = configuration["frames"]
    metadata = {
        "modality": {"name": "video", "configuration": configuration},
        "signal": {"shape": [frames, 3, 36, 64], "loss": "mse"},
        "decoder": {"name": "toy-decoder", "configuration": {}},
        "encoder": None,
        "embedding": {"array": "embedding", "shape": [frames, 2, 1, 1], "dtype": "float16"},
        "weights": {"precision": "float32"},
        "fit": {"preset": "fast", "steps": 1, "decoder_parameters": 10},
        "quality": quality,
    }
    embedding = np.zeros((frames, 2, 1, 1), np.float16)
    tensors = {"w": torch.zeros(2)}
    write_nrep(path, metadata=metadata, arrays={"embedding": embedding}, tensors=tensors)
    return path


def _configuration(**changes):
    configuration = {
        "kind": "file",
        "shape": [10, 36, 64, 3],
        "dtype": "uint8",
        "value_range": [0, 255],
        "channels": 3,
        "frames": 10,
        "fps": "24000/1001",
        "source": "talk.mkv",
        "codec": "hevc",
        "pixel_format": "yuv420p10le",
        "frame_range": [5, 15],
        "size": [64, 36],
        "ignored_streams": ["audio", "subtitle"],
    }
    return {**configuration, **changes}


def test_info_shows_the_source_range_size_and_ignored_streams(tmp_path, capsys):
    quality = {"psnr": 30.5, "ms_ssim": 0.95, "psnr_frames": {"mean": 31.25, "min": 27.5}}
    path = _video_nrep(tmp_path / "talk.nrep", _configuration(), quality)
    assert info.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "10 frames, 64x36, 24000/1001 fps (23.976), 0.417 s" in out
    assert "talk.mkv: hevc yuv420p10le, frames 5:15, resized to 64x36" in out
    assert "ignored streams: audio, subtitle" in out
    assert "PSNR 30.50 dB, MS-SSIM 0.9500, per-frame PSNR mean 31.25 dB, min 27.50 dB" in out
    pixels = 10 * 36 * 64
    assert f"{path.stat().st_size * 8 / pixels:.4f} bpp" in out
    assert info.main([str(path), "--json"]) == 0
    video = json.loads(capsys.readouterr().out)["video"]
    assert video["frame_range"] == [5, 15] and video["size"] == [64, 36]
    assert video["ignored_streams"] == ["audio", "subtitle"]
    assert video["codec"] == "hevc" and video["pixel_format"] == "yuv420p10le"
    assert video["duration_s"] == pytest.approx(10 * 1001 / 24000)


def test_info_reads_torch_clips_channels_first_and_whole_rates(tmp_path, capsys):
    configuration = _configuration(
        kind="torch",
        shape=[10, 3, 36, 64],
        dtype="float32",
        value_range=[-1.5, 2.0],
        fps="25/1",
        source=None,
        codec=None,
        pixel_format=None,
        frame_range=[0, 10],
        size=None,
        ignored_streams=[],
    )
    # an exact decode: the file records PSNR inf as null, with lossless true
    per_frame = {"mean": None, "min": None}
    quality = {"psnr": None, "ms_ssim": 1.0, "psnr_frames": per_frame, "lossless": True}
    path = _video_nrep(tmp_path / "tensor.nrep", configuration, quality)
    assert info.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "10 frames, 64x36, 25 fps, 0.400 s" in out
    assert "a torch tensor: frames 0:10" in out and "ignored streams" not in out
    assert "PSNR n/a, MS-SSIM 1.0000, per-frame PSNR mean n/a, min n/a, lossless True" in out
    assert info.main([str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["psnr"] is None and report["video"]["psnr_frames_min"] is None
    assert report["video"]["fps_decimal"] == 25.0
    assert (report["video"]["width"], report["video"]["height"]) == (64, 36)
