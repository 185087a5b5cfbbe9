""":func:`convert`: fit every item of a source and keep one ``.nrep`` per item, resumably.

The parent process alone plans the run, takes the output folder's lock and writes the
index; workers (:mod:`neurep.conversion.runner`) only read, fit and save items.

An item is skipped, without being read, when the index's latest line for its output says
``ok`` with these settings, the output file is there with the recorded size, and the
source's size and mtime are the recorded ones. Otherwise it goes to a worker, which hashes
the source and keeps an existing output whose metadata records this source hash and these
settings (a run killed after saving but before indexing), refits one whose source changed,
and leaves alone one made with other settings unless ``force`` is on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neurep.conversion.index import INDEX_NAME, IndexState, IndexWriter, read_index
from neurep.conversion.report import ConvertReport
from neurep.conversion.runner import make_runner
from neurep.conversion.settings import fit_settings, settings_hash
from neurep.conversion.sources import Item, find_items
from neurep.conversion.work import BatchTask, Task
from neurep.errors import InputError

__all__ = ["LOCK_NAME", "convert"]

#: The lock file that keeps two runs from writing one output folder.
LOCK_NAME = ".neurep-convert.lock"


def convert(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    key: str | None = None,
    workers: int = 1,
    dask_local: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    batch: int = 1,
    **fit_options: Any,
) -> ConvertReport:
    """Fit each item of ``source`` and save it under ``out_dir``, with an index.

    Args:
        source: a folder (recursive; files of every registered modality by extension),
            a glob (``"photos/**/*.jpg"``), a text file listing paths, or an HDF5 file
            (with ``key``).
        out_dir: the output folder (created): one ``.nrep`` per item at the item's path
            relative to the source (HDF5 rows: ``KEY/000123.nrep``), and ``index.jsonl``,
            one JSON line appended per finished item (see :mod:`neurep.conversion.index`).
        key: the HDF5 dataset whose rows are the items, read one row at a time.
        workers: local processes (torch threads split so that workers x threads = cores);
            they are spawned, so a script that asks for more than one must call this under
            ``if __name__ == "__main__":``.
        dask_local: start a ``distributed.LocalCluster`` of this many workers instead.
        scheduler: the address (``tcp://HOST:PORT``) of a running Dask scheduler instead;
            its workers need neurep installed and the same paths to sources and out_dir.
        force: refit items converted before with other settings (unchanged items already
            converted with these settings are still skipped).
        progress: one overall progress bar on stderr.
        batch: items per task (default 1: one at a time). A worker given up to ``batch``
            consecutive items fits those of one modality and signal shape together as
            stacked independent models (:func:`~neurep.fitting.pipeline.fit_datums`):
            much faster for many small items, each still its own datum, equal to its
            one-at-a-time fit up to floating-point rounding (so ``batch`` is not part of
            the settings hash). Items with a ``max_bytes``/``bpp``/``psnr`` target, or of
            several items each (video), are still fitted one at a time.
        **fit_options: as :func:`neurep.fit`: ``preset``, ``steps``, ``modality``,
            ``precision``, ``bpp``, ``max_bytes``, ``psnr``, ``seed``, ``device``, ...

    Returns:
        A :class:`~neurep.conversion.report.ConvertReport`; ``report.ok`` is False when an
        item failed (its error is in the index) or was made with other settings.
        Rerunning the same call converts only what is missing.

    Raises:
        neurep.InputError: no such source, an unknown fit option, another run holding
            ``out_dir``.
        neurep.MissingDependencyError: h5py or distributed is needed and missing.
    """
    started = time.perf_counter()
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"batch must be a positive number of items, not {batch!r}")
    settings = fit_settings(fit_options)
    digest = settings_hash(settings)
    runner = make_runner(workers, dask_local, scheduler)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    items = find_items(source, key=key, modality=fit_options.get("modality"), exclude=out)
    index_path = out / INDEX_NAME
    report = ConvertReport(out_dir=out, index=index_path, total=len(items))
    with _locked(out):
        remove_temporaries(out)
        state = read_index(index_path)
        report.bad_index_lines = state.bad_lines
        todo = _plan(items, state, out, digest, settings, force, report)
        tasks = _tasks(
            [Task(item, str(out), dict(fit_options), digest, settings, force) for item in todo],
            batch,
        )
        with IndexWriter(index_path) as index, runner, _bar(report, progress) as bar:
            report.runner = runner.description
            for _, row in runner.results(tasks):
                _record(row, state, digest, index, report)
                bar.update(1)
                if report.failed:
                    bar.set_postfix_str(f"failed={report.failed}", refresh=False)
        remove_temporaries(out)
    report.seconds = time.perf_counter() - started
    return report


def _tasks(tasks: list[Task], batch: int) -> Iterator[Task | BatchTask]:
    """``tasks`` as they are (``batch`` 1), else in :class:`BatchTask` of up to ``batch``."""
    if batch == 1:
        yield from tasks
        return
    for first in range(0, len(tasks), batch):
        yield BatchTask(tuple(tasks[first : first + batch]))


def _plan(
    items: list[Item],
    state: IndexState,
    out: Path,
    digest: str,
    settings: dict[str, Any],
    force: bool,
    report: ConvertReport,
) -> list[Item]:
    """The items a worker must look at; counts the others in ``report``."""
    todo = []
    for item in items:
        row = state.latest.get(item.output)
        if (
            row is not None
            and row.get("status") == "ok"
            and _output_size(out, item) == row.get("bytes")
        ):
            if row.get("settings") != digest and not force:
                if not report.differing:
                    report.changes = _changes(row.get("options"), settings)
                report.differing.append(item.output)
                continue
            if row.get("settings") == digest and _stat(item) == (
                row.get("source_size"),
                row.get("source_mtime_ns"),
            ):
                report.skipped += 1
                continue
        todo.append(item)
    return todo


def _record(
    row: dict[str, Any],
    state: IndexState,
    digest: str,
    index: IndexWriter,
    report: ConvertReport,
) -> None:
    """Count a worker's row in ``report`` and append it to the index when it is news."""
    status = row.get("status")
    if status == "differs":
        report.differing.append(row["output"])
        if not report.changes:
            report.changes = "a file not made with these settings is in the way"
        return
    if status == "ok" and row.get("reused"):
        old = state.latest.get(row["output"]) or {}
        fields = ("status", "settings", "source_sha256", "bytes", "source_size", "source_mtime_ns")
        if old.get("settings") == digest and all(old.get(f) == row.get(f) for f in fields):
            report.skipped += 1  # the index already says all this
            return
        index.append(row)
        known = old.get("status") == "ok" and old.get("settings") == digest
        if known and old.get("source_sha256") == row.get("source_sha256"):
            report.skipped += 1  # touched but unchanged: its size and mtime refreshed
        else:
            report.add(row, reused=True)
        return
    index.append(row)
    report.add(row)


def remove_temporaries(out: Path) -> None:
    """Delete the hidden temporary files of saves cut short (``.NAME.nrep.*.tmp``)."""
    for folder, _, names in os.walk(out):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and ".nrep." in name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))


def _output_size(out: Path, item: Item) -> int | None:
    try:
        return (out / item.output).stat().st_size
    except OSError:
        return None


def _stat(item: Item) -> tuple[int, int] | None:
    try:
        return item.stat()
    except OSError:
        return None


def _changes(before: Any, now: dict[str, Any]) -> str:
    """``preset: 'balanced' -> 'fast'`` for the settings that differ."""
    if not isinstance(before, dict):
        return ""
    keys = sorted(set(before) | set(now))
    changed = [
        f"{key}: {before.get(key)!r:.40} -> {now.get(key)!r:.40}"
        for key in keys
        if before.get(key) != now.get(key)
    ]
    return ", ".join(changed)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file (POSIX ``flock``) for the run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{out}: another neurep convert is writing to this folder (it holds "
                f"{out / LOCK_NAME}); wait for it or choose another output folder"
            ) from None
        yield
    finally:
        os.close(fd)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass


@contextlib.contextmanager
def _bar(report: ConvertReport, progress: bool) -> Iterator[Any]:
    """One bar for the run: done/total, items/s, ETA and failures."""
    if not progress:
        yield _NoBar()
        return
    from tqdm import tqdm

    done = report.skipped + len(report.differing)
    with tqdm(
        total=report.total,
        initial=done,
        desc="neurep convert",
        unit="item",
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    ) as bar:
        yield bar
