"""``neurep fit`` then ``neurep decode`` / ``neurep info``, end to end through the Python API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from neurep.cli import decode, fit, info

RNG = np.random.default_rng(11)
STEPS = "3"  # a few steps: these tests pin the plumbing, not the quality


def _smooth_rgb(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    channels = [np.sin(x / 5.0), np.cos(y / 7.0), np.sin((x + y) / 9.0)]
    return ((np.stack(channels, axis=-1) + 1) * 127.5).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted_png(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    source = folder / "small.png"
    Image.fromarray(_smooth_rgb(32, 48)).save(source)
    target = folder / "small.nrep"
    argv = [str(source), "-o", str(target), "--steps", STEPS, "--precision", "float32", "-q"]
    assert fit.main(argv) == 0
    return source, target


def test_fit_writes_a_nrep_file_and_prints_a_summary(tmp_path, capsys):
    source = tmp_path / "tiny.png"
    Image.fromarray(_smooth_rgb(16, 24)).save(source)
    target = tmp_path / "tiny.nrep"
    assert fit.main([str(source), "-o", str(target), "--steps", "2", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert target.is_file()
    assert f"{target.stat().st_size:,} bytes" in out and "bpp" in out and "PSNR" in out


def test_decode_to_png_gives_the_original_shape_and_dtype(fitted_png, tmp_path):
    source, nrep = fitted_png
    output = tmp_path / "decoded.png"
    assert decode.main([str(nrep), "-o", str(output), "--quiet"]) == 0
    original = np.asarray(Image.open(source))
    decoded = np.asarray(Image.open(output))
    assert decoded.shape == original.shape and decoded.dtype == original.dtype


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_decode_to_npy_and_tiff_agrees_with_png(fitted_png, tmp_path, suffix):
    _, nrep = fitted_png
    assert decode.main([str(nrep), "-o", str(tmp_path / "a.png"), "-q"]) == 0
    assert decode.main([str(nrep), "-o", str(tmp_path / f"b{suffix}"), "-q"]) == 0
    png = np.asarray(Image.open(tmp_path / "a.png"))
    other = (
        np.load(tmp_path / "b.npy")
        if suffix == ".npy"
        else np.asarray(Image.open(tmp_path / "b.tif"))
    )
    np.testing.assert_array_equal(other, png)


def test_info_reports_the_fit(fitted_png, capsys):
    _, nrep = fitted_png
    assert info.main([str(nrep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["file_bytes"] == nrep.stat().st_size
    assert report["bpp"] == pytest.approx(nrep.stat().st_size * 8 / (32 * 48))
    assert report["metadata"]["modality"]["name"] == "image"
    assert report["metadata"]["modality"]["configuration"]["shape"] == [32, 48, 3]
    assert report["metadata"]["fit"]["steps"] == int(STEPS)
    assert info.main([str(nrep)]) == 0
    assert "image:" in capsys.readouterr().out


def test_fit_and_decode_a_npy_array(tmp_path):
    values = np.cumsum(RNG.standard_normal(64)).astype(np.float32)
    source = tmp_path / "walk.npy"
    np.save(source, values)
    nrep = tmp_path / "walk.nrep"
    assert fit.main([str(source), "-o", str(nrep), "--steps", "2", "-q"]) == 0
    assert decode.main([str(nrep), "-o", str(tmp_path / "back.npy"), "-q"]) == 0
    decoded = np.load(tmp_path / "back.npy")
    assert decoded.shape == values.shape and decoded.dtype == values.dtype
    assert values.min() <= decoded.min() and decoded.max() <= values.max()


# ---- user mistakes: one line on stderr, non-zero exit, no traceback --------------------------


def _assert_one_error_line(capsys, *fragments):
    captured = capsys.readouterr()
    assert captured.err.startswith("neurep: error: "), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err


def test_fit_refuses_a_missing_input(tmp_path, capsys):
    assert fit.main([str(tmp_path / "absent.png"), "-o", str(tmp_path / "x.nrep")]) == 1
    _assert_one_error_line(capsys, "absent.png", "no such file")


def test_fit_refuses_an_output_without_nrep_suffix(fitted_png, tmp_path, capsys):
    source, _ = fitted_png
    assert fit.main([str(source), "-o", str(tmp_path / "x.png")]) == 1
    _assert_one_error_line(capsys, "x.png", ".nrep")
    assert fit.main([str(source), "-o", str(tmp_path / "no" / "dir" / "x.nrep")]) == 1
    _assert_one_error_line(capsys, "no such directory")


def test_fit_reports_an_unreadable_image_as_input_error(tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("this is text")
    assert fit.main([str(fake), "-o", str(tmp_path / "x.nrep"), "-q"]) == 1
    _assert_one_error_line(capsys, "fake.png")
    assert not (tmp_path / "x.nrep").exists()


def test_fit_reports_an_unknown_modality(fitted_png, tmp_path, capsys):
    source, _ = fitted_png
    code = fit.main([str(source), "-o", str(tmp_path / "x.nrep"), "--modality", "audio", "-q"])
    assert code == 1
    _assert_one_error_line(capsys, "audio")


def test_decode_refuses_unknown_output_formats_and_damaged_files(fitted_png, tmp_path, capsys):
    _, nrep = fitted_png
    assert decode.main([str(nrep), "-o", str(tmp_path / "out.gif")]) == 1
    _assert_one_error_line(capsys, "out.gif", ".png")
    damaged = tmp_path / "damaged.nrep"
    damaged.write_bytes(nrep.read_bytes()[: nrep.stat().st_size // 2])
    assert decode.main([str(damaged), "-o", str(tmp_path / "out.png")]) == 1
    _assert_one_error_line(capsys, "damaged.nrep")
    assert not (tmp_path / "out.png").exists()


def test_fit_refuses_an_unknown_preset_naming_the_known_ones(fitted_png, tmp_path, capsys):
    source, _ = fitted_png
    assert fit.main([str(source), "-o", str(tmp_path / "x.nrep"), "--preset", "turbo"]) == 1
    _assert_one_error_line(capsys, "turbo", "balanced")


def test_int8_precision_makes_a_smaller_file_that_info_calls_quantised(
    fitted_png, tmp_path, capsys
):
    source, float_nrep = fitted_png
    int8_nrep = tmp_path / "int8.nrep"
    argv = [str(source), "-o", str(int8_nrep), "--steps", STEPS, "--precision", "int8", "-q"]
    assert fit.main(argv) == 0
    assert int8_nrep.stat().st_size < float_nrep.stat().st_size
    assert info.main([str(int8_nrep)]) == 0
    weights_line = next(line for line in capsys.readouterr().out.splitlines() if "weights" in line)
    assert "int8" in weights_line and "quantised" in weights_line
    assert info.main([str(float_nrep)]) == 0
    weights_line = next(line for line in capsys.readouterr().out.splitlines() if "weights" in line)
    assert "float32" in weights_line and "quantised" not in weights_line


def test_max_bytes_budget_is_respected_and_too_small_a_budget_is_one_line(tmp_path, capsys):
    image = tmp_path / "budget.png"
    Image.fromarray(_smooth_rgb(24, 40)).save(image)
    target = tmp_path / "budget.nrep"
    argv = [str(image), "-o", str(target), "--steps", "1", "-q"]
    assert fit.main([*argv, "--max-bytes", "60000"]) == 0
    assert target.stat().st_size <= 60000
    capsys.readouterr()
    assert fit.main([*argv, "--max-bytes", "900"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too small" in err


def test_bpp_and_max_bytes_cannot_be_combined(tmp_path, capsys):
    argv = ["x.png", "-o", str(tmp_path / "x.nrep"), "--bpp", "1", "--max-bytes", "100"]
    assert fit.main(argv) == 2


def test_frozen_encoder_flag_reaches_the_fit(tmp_path):
    source = tmp_path / "tiny.png"
    Image.fromarray(_smooth_rgb(16, 24)).save(source)
    frozen, trained = tmp_path / "frozen.nrep", tmp_path / "trained.nrep"
    assert fit.main([str(source), "-o", str(frozen), "--steps", "3", "-q", "--frozen-encoder"]) == 0
    assert fit.main([str(source), "-o", str(trained), "--steps", "3", "-q"]) == 0
    import neurep

    assert neurep.open(frozen).metadata["fit"]["train_encoder"] is False
    assert neurep.open(trained).metadata["fit"]["train_encoder"] is True
