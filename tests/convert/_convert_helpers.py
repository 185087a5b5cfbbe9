"""Helpers of the conversion tests (``from _convert_helpers import ...``): tiny inputs,
reading an index, waiting on other processes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Every fit in these tests: the fast preset, a few steps.
FIT_ARGS = ["--preset", "fast", "--steps", "3"]
FIT_OPTIONS = {"preset": "fast", "steps": 3}
#: How long a test waits for something another process does.
WAIT_S = 90.0


def write_pngs(folder: Path, names: list[str], size: int = 16) -> list[Path]:
    """Random RGB PNGs of ``size`` x ``size`` at ``folder / name`` (by name: one name, one
    image)."""
    paths = []
    for name in names:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def index_rows(out: Path) -> list[dict]:
    """Every complete line of ``out/index.jsonl``."""
    path = out / "index.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def file_stamps(out: Path) -> dict[str, tuple[int, int, bytes]]:
    """(size, mtime_ns, bytes) of every .nrep under ``out``, by relative path."""
    stamps = {}
    for path in sorted(out.rglob("*.nrep")):
        status = path.stat()
        stamps[path.relative_to(out).as_posix()] = (
            status.st_size,
            status.st_mtime_ns,
            path.read_bytes(),
        )
    return stamps


def leftovers(out: Path) -> list[str]:
    """Temporary files of interrupted saves under ``out``."""
    return [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def neurep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "neurep", *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen) -> None:
    """Kill ``process`` (one we started) and reap it."""
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def child_env() -> dict[str, str]:
    """The environment of the processes a test starts: one torch thread each."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def die_once_per_marker(task) -> dict:
    """A worker function for ProcessRunner tests: kills its own process the first time it
    sees an item whose output names a marker file that does not exist yet."""
    marker = Path(task.out_dir) / (task.item.output + ".died")
    if task.item.output.startswith("die") and not marker.exists():
        marker.write_text("")
        os._exit(1)
    return {"output": task.item.output, "status": "ok", "pid": os.getpid()}
