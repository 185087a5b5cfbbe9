"""``neurep info`` on .nrep files written by the container writer (no fitting needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurep.cli import info
from neurep.formats import write_nrep
from neurep.modalities import ArrayAdapter, ImageAdapter

HEIGHT, WIDTH = 24, 40


def _write_datum(
    path, modality_config, *, quality=None, parameters=1234, signal_shape=(1, 3, 5, 5)
):
    embedding = np.zeros((1, 4, 3, 5), dtype=np.float16)
    weights = {"head.weight": torch.zeros(3, 8), "head.bias": torch.zeros(3)}
    metadata = {
        "modality": modality_config,
        "signal": {"shape": list(signal_shape), "loss": "mse"},
        "decoder": {"name": "toy-decoder", "configuration": {"channels": [8, 3]}},
        "encoder": None,
        "embedding": {"array": "embedding", "shape": [1, 4, 3, 5], "dtype": "float16"},
        "weights": {"precision": "float32"},
        "fit": {
            "preset": "fast",
            "steps": 7,
            "learning_rate": 0.02,
            "seed": 3,
            "wall_time_s": 1.25,
            "device": "cpu",
            "decoder_parameters": parameters,
        },
        "quality": quality if quality is not None else {"psnr": 31.4159, "ms_ssim": 0.97531},
    }
    return write_nrep(path, metadata=metadata, arrays={"embedding": embedding}, tensors=weights)


@pytest.fixture
def image_nrep(tmp_path):
    adapter, _ = ImageAdapter.from_object(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    path = tmp_path / "picture.nrep"
    _write_datum(path, adapter.to_config())
    return path


def test_summary_names_modality_decoder_embedding_size_quality_and_fit(image_nrep, capsys):
    assert info.main([str(image_nrep)]) == 0
    out = capsys.readouterr().out
    file_bytes = image_nrep.stat().st_size
    assert f"{file_bytes:,} bytes" in out
    assert f"{file_bytes * 8 / (HEIGHT * WIDTH):.4f} bpp" in out
    assert "image:" in out and f"shape=[{HEIGHT}, {WIDTH}, 3]" in out and "dtype=uint8" in out
    assert "toy-decoder, 1,234 parameters" in out
    assert "[1, 4, 3, 5] float16" in out
    assert "float32" in out  # weight precision
    assert "PSNR 31.42 dB" in out and "MS-SSIM 0.9753" in out
    assert "preset=fast" in out and "steps=7" in out and "seed=3" in out


def test_json_holds_the_metadata_and_the_derived_fields(image_nrep, capsys):
    assert info.main([str(image_nrep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["file_bytes"] == image_nrep.stat().st_size
    assert report["num_pixels"] == HEIGHT * WIDTH
    assert report["bpp"] == pytest.approx(report["file_bytes"] * 8 / (HEIGHT * WIDTH))
    assert report["decoder_parameters"] == 1234
    assert report["embedding_shape"] == [1, 4, 3, 5]
    assert report["precision"] == "float32"
    assert report["metadata"]["modality"]["name"] == "image"
    assert report["metadata"]["quality"]["psnr"] == pytest.approx(31.4159)
    assert report["metadata"]["format"] == "neurep"


def test_bpp_is_left_out_where_pixels_do_not_apply(tmp_path, capsys):
    adapter, _ = ArrayAdapter.from_object(np.linspace(0, 1, 100))
    path = tmp_path / "signal.nrep"
    _write_datum(path, adapter.to_config(), quality={"psnr": None, "ms_ssim": None})
    assert info.main([str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bpp"] is None and report["num_pixels"] is None
    assert info.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert " bpp (" not in out and "PSNR n/a" in out and "array:" in out


def test_a_modality_this_version_does_not_know_still_summarises(tmp_path, capsys):
    path = tmp_path / "future.nrep"
    _write_datum(path, {"name": "hologram", "configuration": {"planes": 3}})
    assert info.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "hologram: planes=3" in out and " bpp (" not in out


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"not a zip at all", "garbage.nrep"), (b"PK\x03\x04" + b"\x00" * 40, "truncated.nrep")],
)
def test_damaged_files_give_one_error_line_and_no_traceback(tmp_path, capsys, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    assert info.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurep: error: ") and err.count("\n") == 1
    assert name in err and "Traceback" not in err


def test_missing_file_and_directory_are_user_errors(tmp_path, capsys):
    assert info.main([str(tmp_path / "nope.nrep")]) == 1
    assert capsys.readouterr().err == f"neurep: error: {tmp_path / 'nope.nrep'}: no such file\n"
    assert info.main([str(tmp_path)]) == 1
    assert "not a directory" in capsys.readouterr().err
