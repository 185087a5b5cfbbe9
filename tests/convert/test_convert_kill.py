"""A conversion SIGKILLed mid-way and rerun: every item converted once, nothing finished
touched, no partial files."""

from __future__ import annotations

import signal
import subprocess

from _convert_helpers import (
    FIT_ARGS,
    child_env,
    file_stamps,
    index_rows,
    leftovers,
    neurep_command,
    stop,
    wait_for,
    write_pngs,
)

import neurep

ITEMS = 8


def test_a_killed_run_rerun_converts_every_item_once_and_keeps_finished_files(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, [f"d{i % 2}/img{i}.png" for i in range(ITEMS)])
    command = neurep_command("convert", str(source), "-o", str(out), *FIT_ARGS, "-q")

    run = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(index_rows(out)) >= 1 or run.poll() is not None, "a first item")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        stop(run)
    assert run.returncode == -signal.SIGKILL, run.stderr.read().decode()
    finished = {row["output"] for row in index_rows(out)}
    assert 1 <= len(finished) < ITEMS
    kept = file_stamps(out)  # what was indexed, and at most one file saved but not indexed
    assert set(kept) >= finished
    (out / "d1").mkdir(exist_ok=True)
    (out / "d1" / ".img7.nrep.k1ll3d.tmp").write_bytes(b"a save cut short")

    rerun = subprocess.run(command, env=child_env(), capture_output=True, timeout=300)

    assert rerun.returncode == 0, rerun.stderr.decode()
    rows = index_rows(out)
    outputs = [row["output"] for row in rows]
    assert sorted(outputs) == sorted(f"d{i % 2}/img{i}.nrep" for i in range(ITEMS))
    assert all(row["status"] == "ok" for row in rows)
    after = file_stamps(out)
    assert {name: after[name] for name in kept} == kept  # same bytes, same mtime
    assert leftovers(out) == []
    for name in after:
        neurep.open(out / name)  # every file is whole
