"""``neurep convert --shared-decoder`` / ``--append`` on a folder of tiny PNGs: the collection
made, its names, an append that adds only the new items (old shards untouched), the
summary, and usage errors for per-item options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import neurep
from neurep.cli._common import EXIT_USAGE
from neurep.cli.main import main
from neurep.collection import is_collection

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIT = ["--shared-decoder", "--epochs", "1", "--embedding-channels", "4"]


def write_pngs(folder, names, seed):
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)


def test_shared_decoder_then_append_adds_only_new_items(tmp_path, capsys):
    source, out = tmp_path / "source", tmp_path / "col"
    first = [f"p{k}.png" for k in range(9)] + ["sub/q.png"]
    write_pngs(source, first, 0)
    assert main(["convert", str(source), "-o", str(out), *FIT, "--shard-items", "4"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("10 items, shared model fitted in ")
    assert "bytes per item" in summary and "mean PSNR" in summary
    assert is_collection(out)
    collection = neurep.load(out)
    expected = sorted(name.removesuffix(".png") for name in first)
    assert sorted(collection.names) == expected
    assert collection.record(0)["name"] in expected
    shards = {p: p.read_bytes() for p in (out / "shards").iterdir()}
    assert len(shards) == 3  # 4 + 4 + 2

    # Rerunning without --append would refit: refused.
    assert main(["convert", str(source), "-o", str(out), *FIT, "-q"]) == 1
    assert "--append" in capsys.readouterr().err

    write_pngs(source, ["r0.png", "r1.png", "sub/r2.png"], 1)
    assert main(["convert", str(source), "-o", str(out), "--append", "--shard-items", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"added 3 items, skipped 10 already there in {out}")
    assert lines[-1].startswith("13 items, ")
    grown = neurep.load(out)
    assert grown.names[:10] == collection.names
    assert sorted(grown.names[10:]) == ["r0", "r1", "sub/r2"]
    assert all(path.read_bytes() == data for path, data in shards.items())  # untouched
    assert grown[12].as_tensor().shape == (3, 16, 16)

    # Again: nothing left to add.
    assert main(["convert", str(source), "-o", str(out), *FIT, "--append", "--quality-floor",
                 "99"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("added 0 items, skipped 13")
    assert lines[-1].endswith("13 below the quality floor 99 dB")
    assert len(neurep.load(out)) == 13


@pytest.mark.parametrize(
    "extra",
    [
        ["--shared-decoder", "--preset", "fast"],
        ["--shared-decoder", "--workers", "2"],
        ["--shared-decoder", "--bpp", "0.5"],
        ["--append", "--steps", "5"],
        ["--append"],  # OUT_DIR holds no collection
        ["--train-items", "3"],  # a collection option without --shared-decoder
    ],
)
def test_usage_errors(tmp_path, capsys, extra):
    write_pngs(tmp_path / "source", ["a.png"], 0)
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "source"), "-o", str(out), *extra]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: neurep convert" in err and "error:" in err
    assert not out.exists()
