"""``neurep convert`` end to end in one process (and in local worker processes): failure
isolation, idempotent reruns, settings changes, recovery of unindexed files, HDF5 rows."""

from __future__ import annotations

import os

import h5py
import numpy as np
from _convert_helpers import (
    FIT_ARGS,
    FIT_OPTIONS,
    file_stamps,
    index_rows,
    leftovers,
    write_pngs,
)

import neurep
from neurep.cli.main import main

NAMES = ["a.png", "b.png", "sub/c.png", "sub/d.png"]


def test_a_corrupt_file_is_an_error_line_and_the_rest_converts(tmp_path, capsys):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, NAMES)
    (source / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    status = main(["convert", str(source), "-o", str(out), *FIT_ARGS, "-q"])

    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"neurep: 4 converted, 1 failed: see {out / 'index.jsonl'}"
    rows = {row["output"]: row for row in index_rows(out)}
    assert set(rows) == {"a.nrep", "b.nrep", "sub/c.nrep", "sub/d.nrep", "sub/broken.nrep"}
    broken = rows.pop("sub/broken.nrep")
    assert broken["status"] == "error" and "broken.png" in broken["error"]
    assert not (out / "sub" / "broken.nrep").exists()
    for output, row in rows.items():
        assert row["status"] == "ok"
        assert row["bytes"] == (out / output).stat().st_size
        assert set(row) >= {"source", "source_sha256", "quality", "fit_s", "settings", "neurep"}
        assert neurep.load(out / output).decode().shape == (16, 16, 3)
    assert neurep.open(out / "a.nrep").metadata["fit"]["convert"] == {
        "source_sha256": rows["a.nrep"]["source_sha256"],
        "settings": rows["a.nrep"]["settings"],
    }


def test_a_rerun_converts_only_what_is_missing_and_touches_nothing_else(tmp_path, capsys):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, NAMES)
    first = neurep.convert(source, out, progress=False, **FIT_OPTIONS)
    assert (first.converted, first.failed, first.ok) == (4, 0, True)
    assert first.mean_psnr > 0 and first.fitted_bytes == sum(
        (out / name).stat().st_size for name in ("a.nrep", "b.nrep", "sub/c.nrep", "sub/d.nrep")
    )
    stamps, lines = file_stamps(out), index_rows(out)

    again = neurep.convert(source, out, progress=False, **FIT_OPTIONS)
    assert (again.converted, again.skipped) == (0, 4)
    assert file_stamps(out) == stamps and index_rows(out) == lines

    write_pngs(source, ["e.png"])
    assert main(["convert", str(source), "-o", str(out), *FIT_ARGS]) == 0
    summary = capsys.readouterr().out
    assert "1 converted, 4 already done, 0 failed" in summary
    assert {k: v for k, v in file_stamps(out).items() if k != "e.nrep"} == stamps
    assert [row["output"] for row in index_rows(out)][-1] == "e.nrep"
    assert leftovers(out) == []


def test_changed_settings_refit_only_with_force(tmp_path, capsys):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, NAMES[:2])
    assert main(["convert", str(source), "-o", str(out), *FIT_ARGS, "-q"]) == 0
    stamps = file_stamps(out)

    changed = ["--preset", "fast", "--steps", "4", "-q"]
    assert main(["convert", str(source), "-o", str(out), *changed]) == 1
    err = capsys.readouterr().err
    assert "2 items were converted with other settings (steps: 3 -> 4)" in err
    assert "a.nrep, b.nrep" in err and "--force" in err
    assert file_stamps(out) == stamps

    assert main(["convert", str(source), "-o", str(out), *changed, "--force"]) == 0
    assert all(file_stamps(out)[k][2] != stamps[k][2] for k in stamps)
    assert main(["convert", str(source), "-o", str(out), *changed]) == 0  # now current


def test_a_saved_file_without_an_index_line_is_kept_not_refitted(tmp_path):
    """As after a kill between the save and the index append."""
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, NAMES[:2])
    neurep.convert(source, out, progress=False, **FIT_OPTIONS)
    stamps = file_stamps(out)
    index = out / "index.jsonl"
    index.write_text(index.read_text().splitlines()[0] + "\n")  # b.nrep's line is lost

    report = neurep.convert(source, out, progress=False, **FIT_OPTIONS)

    assert (report.converted, report.reused, report.skipped) == (0, 1, 1)
    assert file_stamps(out) == stamps
    rows = index_rows(out)
    assert [row["output"] for row in rows] == ["a.nrep", "b.nrep"] and rows[1]["reused"]


def test_a_changed_source_is_refitted_without_force(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, NAMES[:1])
    neurep.convert(source, out, progress=False, **FIT_OPTIONS)
    before = index_rows(out)[-1]["source_sha256"]
    write_pngs(source, ["x.png"])
    (source / "x.png").replace(source / "a.png")

    report = neurep.convert(source, out, progress=False, **FIT_OPTIONS)

    assert report.converted == 1
    assert index_rows(out)[-1]["source_sha256"] != before


def test_hdf5_rows_convert_row_by_row_in_worker_processes(tmp_path):
    path, out = tmp_path / "data.h5", tmp_path / "out"
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(1, 16, 16, 3))

    status = main(
        ["convert", str(path), "--key", "images", "-o", str(out), *FIT_ARGS, "--workers", "2", "-q"]
    )

    assert status == 0
    rows = sorted(index_rows(out), key=lambda row: row["row"])
    assert [(r["output"], r["key"], r["row"], r["status"]) for r in rows] == [
        (f"images/{i:06d}.nrep", "images", i, "ok") for i in range(3)
    ]
    threads = neurep.open(out / "images" / "000000.nrep").metadata["fit"]["threads"]
    assert threads == max(1, len(os.sched_getaffinity(0)) // 2)  # 2 workers share the cores
    decoded = neurep.load(out / "images" / "000002.nrep").decode()
    assert decoded.shape == images[2].shape and decoded.dtype == np.uint8
    assert neurep.convert(path, out, key="images", progress=False, **FIT_OPTIONS).skipped == 3


def test_convert_has_its_own_help_and_refuses_two_places_to_run(capsys):
    assert main(["convert", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: neurep convert" in out and "dask worker tcp://HOST:8786" in out
    assert main(["convert", "src", "-o", "out", "--workers", "2", "--dask-local", "2"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_missing_source_is_one_error_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent"), "-o", str(tmp_path / "out")]) == 1
    assert (
        capsys.readouterr().err == f"neurep: error: {tmp_path / 'absent'}: no such file or folder\n"
    )


def test_shape_read_options_reach_the_shapes_of_a_mixed_folder_only(tmp_path, capsys):
    import trimesh

    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, ["photo.png"])
    trimesh.creation.box((1.0, 0.5, 0.5)).export(source / "box.stl")

    status = main(["convert", str(source), "-o", str(out), *FIT_ARGS, "--resolution", "8", "-q"])

    assert status == 0, capsys.readouterr().err
    rows = {row["output"]: row for row in index_rows(out)}
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert rows["box.nrep"]["modality"] == "mesh" and rows["photo.nrep"]["modality"] == "image"
    configuration = neurep.open(out / "box.nrep").metadata["modality"]["configuration"]
    assert configuration["grid_shape"] == [8, 8, 8]
