"""``OUT_DIR/index.jsonl``: the append-only record of a conversion, one JSON line per item.

Each line is written with one ``os.write`` of the whole line on an ``O_APPEND`` descriptor,
then fsynced, and only after the item's ``.nrep`` is in place; so a run killed at any
moment (SIGKILL included) leaves complete lines for every finished item, and at worst one
truncated last line. :func:`read_index` ignores lines that are not whole JSON objects, and
:class:`IndexWriter` ends such a line before appending, so it never swallows the next one.
The latest line about an output wins.

A line holds: ``source`` (and ``key``, ``row`` for HDF5 rows), ``source_sha256``,
``source_size``, ``source_mtime_ns``, ``output`` (relative to OUT_DIR), ``bytes``,
``quality`` (``psnr``, ``ms_ssim``, ...), ``fit_s``, ``modality``, ``settings`` (the hash
of :mod:`neurep.conversion.settings`) and ``options`` (what it hashes), ``neurep`` (version),
``time`` (UTC, ISO 8601), and ``status``: ``"ok"``, or ``"error"`` with ``error``, the
message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["INDEX_NAME", "IndexState", "IndexWriter", "read_index"]

INDEX_NAME = "index.jsonl"


@dataclass
class IndexState:
    """What an index says: the latest line for each output, and how many lines were bad."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: int = 0
    bad_lines: int = 0


def read_index(path: str | os.PathLike) -> IndexState:
    """Parse ``path`` (missing: empty); lines that are not JSON objects with an ``output``
    string (a truncated last line) are counted in ``bad_lines`` and otherwise ignored."""
    state = IndexState()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return state
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        state.lines += 1
        try:
            row = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("output"), str):
            state.bad_lines += 1
            continue
        state.latest[row["output"]] = row
    return state


class IndexWriter:
    """Appends lines to an index; a context manager. One writer per index at a time (the
    caller holds the output folder's lock)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            self._end_partial_line()
        except BaseException:
            os.close(self._fd)
            raise

    def _end_partial_line(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            last = handle.read(1)
        if last != b"\n":  # a line cut short by a crash: end it, so it stays alone
            self._write(b"\n")

    def append(self, row: dict[str, Any]) -> None:
        """Write ``row`` as one line (non-finite floats as null) and fsync it."""
        line = json.dumps(_json_safe(row), ensure_ascii=False, separators=(",", ":"))
        self._write(line.encode("utf-8") + b"\n")

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)  # one write: O_APPEND puts it whole at the end
        while written < len(data):  # only on exotic filesystems; still appended in order
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_safe(value: Any) -> Any:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
