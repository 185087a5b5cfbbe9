"""``neurep convert --batch K``: items of one shape fitted several at a time (stacked), each
still its own file and index row, close to its one-at-a-time conversion."""

from __future__ import annotations

import numpy as np
import pytest
from _convert_helpers import FIT_ARGS, FIT_OPTIONS, file_stamps, index_rows, write_pngs

import neurep
from neurep.cli.main import main

NAMES = ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png", "sub/f.png"]
OUTPUTS = {name.replace(".png", ".nrep") for name in NAMES}


def _source(tmp_path):
    source = tmp_path / "src"
    write_pngs(source, NAMES)
    (source / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return source


def test_batches_convert_every_item_and_a_rerun_skips_them(tmp_path, capsys):
    source, out, one = _source(tmp_path), tmp_path / "out", tmp_path / "one"

    status = main(["convert", str(source), "-o", str(out), *FIT_ARGS, "--batch", "4", "-q"])

    assert status == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"neurep: 6 converted, 1 failed: see {out / 'index.jsonl'}"
    )
    rows = {row["output"]: row for row in index_rows(out)}
    assert set(rows) == OUTPUTS | {"b_broken.nrep"}
    broken = rows.pop("b_broken.nrep")
    assert broken["status"] == "error" and "b_broken.png" in broken["error"]
    stamps = file_stamps(out)
    assert set(stamps) == OUTPUTS
    # sub/d, e, f made one batch: fitted together, each with its share of the time
    shares = {neurep.open(out / f"sub/{n}.nrep").metadata["fit"]["wall_time_s"] for n in "def"}
    assert len(shares) == 1

    again = neurep.convert(source, out, progress=False, batch=4, **FIT_OPTIONS)
    assert (again.converted, again.skipped, again.failed) == (0, 6, 1)
    assert file_stamps(out) == stamps

    alone = neurep.convert(source, one, progress=False, **FIT_OPTIONS)
    assert (alone.converted, alone.failed) == (6, 1)
    single = {row["output"]: row for row in index_rows(one)}
    for output, row in rows.items():
        expected = single[output]
        assert row["status"] == "ok" and row["bytes"] == (out / output).stat().st_size
        assert set(row) == set(expected)  # the same fields as a one-at-a-time row
        assert row["settings"] == expected["settings"]  # batch is not a setting
        assert row["source_sha256"] == expected["source_sha256"]
        batched, by_one = neurep.load(out / output), neurep.load(one / output)
        difference = np.abs(batched.decode().astype(int) - by_one.decode().astype(int))
        assert difference.shape == (16, 16, 3) and difference.max() <= 3
        assert abs(row["quality"]["psnr"] - expected["quality"]["psnr"]) < 0.05
        assert neurep.open(out / output).metadata["fit"]["convert"] == {
            "source_sha256": row["source_sha256"],
            "settings": row["settings"],
        }


def test_batches_run_in_worker_processes(tmp_path):
    source, out = _source(tmp_path), tmp_path / "out"

    report = neurep.convert(source, out, progress=False, batch=2, workers=2, **FIT_OPTIONS)

    assert (report.converted, report.failed) == (6, 1)
    rows = {row["output"]: row for row in index_rows(out)}
    assert {o for o, r in rows.items() if r["status"] == "ok"} == OUTPUTS
    for output in OUTPUTS:
        assert neurep.load(out / output).decode().shape == (16, 16, 3)
    again = neurep.convert(source, out, progress=False, batch=2, workers=2, **FIT_OPTIONS)
    assert (again.converted, again.skipped) == (0, 6)


def test_a_failing_stacked_fit_falls_back_to_one_item_at_a_time(tmp_path, monkeypatch):
    from neurep.fitting import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("stacked fit failed")

    monkeypatch.setattr(pipeline, "fit_datums", broken)
    source, out = _source(tmp_path), tmp_path / "out"

    report = neurep.convert(source, out, progress=False, batch=3, **FIT_OPTIONS)

    assert (report.converted, report.failed) == (6, 1)
    rows = {row["output"]: row for row in index_rows(out)}
    assert {o for o, r in rows.items() if r["status"] == "ok"} == OUTPUTS


def test_batches_run_on_a_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    source, out = _source(tmp_path), tmp_path / "out"

    report = neurep.convert(source, out, progress=False, batch=4, dask_local=1, **FIT_OPTIONS)

    assert (report.converted, report.failed) == (6, 1)
    again = neurep.convert(source, out, progress=False, batch=4, dask_local=1, **FIT_OPTIONS)
    assert (again.converted, again.skipped) == (0, 6)
