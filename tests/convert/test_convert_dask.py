"""Conversion on Dask: a LocalCluster (``--dask-local``), and a real scheduler with two
workers on 127.0.0.1 (``--scheduler``), one of which is killed mid-run.

The workers run without a nanny: killing one then removes it for good, so its items can
only finish on the other (with a nanny the worker would restart in place).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _convert_helpers import (
    FIT_ARGS,
    FIT_OPTIONS,
    WAIT_S,
    child_env,
    free_port,
    index_rows,
    leftovers,
    neurep_command,
    port_open,
    stop,
    wait_for,
    write_pngs,
)

import neurep

pytest.importorskip("distributed")

DASK = str(Path(sys.executable).parent / "dask")
ITEMS = 6
HALF_THE_CORES = max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_local_dask_cluster_converts_every_item(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, [f"img{i}.png" for i in range(4)])

    report = neurep.convert(source, out, dask_local=2, progress=False, **FIT_OPTIONS)

    assert (report.converted, report.failed) == (4, 0), report.errors
    assert sorted(row["output"] for row in index_rows(out)) == [f"img{i}.nrep" for i in range(4)]
    assert "LocalCluster of 2 workers" in report.runner
    assert neurep.open(out / "img0.nrep").metadata["fit"]["threads"] == HALF_THE_CORES


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two nanny-less workers on 127.0.0.1: (address, worker processes)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [DASK, *args], env=child_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        processes.append(process)
        return process

    try:
        start(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"
        )
        wait_for(lambda: port_open(port) or processes[0].poll() is not None, "the scheduler")
        assert processes[0].poll() is None, "the scheduler exited"
        options = ["--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        workers = [
            start(
                f"worker{i}",
                "worker",
                address,
                *options,
                "--name",
                f"w{i}",
                "--local-directory",
                str(tmp_path / f"w{i}"),
            )
            for i in range(2)
        ]
        from distributed import Client

        with Client(address, timeout=f"{WAIT_S:.0f}s") as client:
            client.wait_for_workers(2, timeout=WAIT_S)
        yield address, workers
    except BaseException:
        for log in sorted(logs.iterdir()):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for process in reversed(processes):
            stop(process)


def test_a_scheduler_converts_every_item_though_a_worker_is_killed(tmp_path, cluster):
    address, workers = cluster
    source, out = tmp_path / "src", tmp_path / "out"
    write_pngs(source, [f"img{i}.png" for i in range(ITEMS)])
    command = neurep_command(
        "convert", str(source), "-o", str(out), *FIT_ARGS, "--scheduler", address, "-q"
    )

    run = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(index_rows(out)) >= 1 or run.poll() is not None, "a first item")
        assert run.poll() is None, run.stderr.read().decode()
        assert len(index_rows(out)) < ITEMS
        busy = _busy_workers(address)
        assert busy, "no worker had an item to lose"
        workers[busy[0]].send_signal(signal.SIGKILL)
        run.wait(timeout=300)
    finally:
        stop(run)

    assert run.returncode == 0, run.stderr.read().decode()
    rows = index_rows(out)
    assert sorted(row["output"] for row in rows) == [f"img{i}.nrep" for i in range(ITEMS)]
    assert all(row["status"] == "ok" for row in rows)
    assert leftovers(out) == []
    for row in rows:  # two worker threads on this host share its cores
        assert neurep.open(out / row["output"]).metadata["fit"]["threads"] == HALF_THE_CORES


def _busy_workers(address: str) -> list[int]:
    """Numbers (``--name wN``) of the workers running or holding an item now."""
    from distributed import Client

    with Client(address, timeout=f"{WAIT_S:.0f}s") as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        return sorted(int(names[addr][1:]) for addr, keys in client.processing().items() if keys)


def test_dask_options_without_distributed_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(neurep.MissingDependencyError, match=r"neurep\[convert\]"):
        neurep.convert(tmp_path, tmp_path / "out", dask_local=2)
    assert not (tmp_path / "out").exists()
