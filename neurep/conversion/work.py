"""One item's conversion, as a worker runs it (in this process, a local process, or a Dask
worker): read, hash, fit, save, and return a small index row (never the datum).

The ``.nrep`` is written atomically (:meth:`NeuralDatum.save`) and carries, in its
``metadata["fit"]["convert"]``, the source's sha256 and the settings hash. So a file that
is in place but has no index line (a run killed between the two) is recognised on the next
run and kept, not refitted.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from neurep._version import __version__
from neurep.conversion.sources import Item

__all__ = [
    "CONVERT_KEY",
    "BatchTask",
    "Task",
    "convert_batch",
    "convert_item",
    "error_row",
    "run_task",
    "task_error_rows",
]

#: The key of ``metadata["fit"]`` that records what a converted file was made from.
CONVERT_KEY = "convert"


@dataclass(frozen=True)
class Task:
    """What a worker needs for one item (small and picklable).

    out_dir: the output folder, absolute (shared by all workers).
    fit_options: keyword arguments of :func:`neurep.fit`.
    settings, options: the settings hash and what it hashes.
    force: replace an existing file made with other settings (or not by convert).
    threads: torch threads for the fit; None: leave them.
    host_threads: on a Dask cluster, the worker threads of each host, so that a worker
        takes ``cores // host_threads[host]`` torch threads.
    """

    item: Item
    out_dir: str
    fit_options: dict[str, Any]
    settings: str
    options: dict[str, Any]
    force: bool = False
    threads: int | None = None
    host_threads: dict[str, int] | None = None


@dataclass(frozen=True)
class BatchTask:
    """Up to ``convert(batch=K)`` consecutive items, converted by one worker
    (:func:`convert_batch`): those of one modality and signal shape are fitted together.
    A retry re-runs the whole batch; its finished items are then kept, not refitted."""

    tasks: tuple[Task, ...]

    def with_threads(self, threads: int | None, host_threads: dict[str, int] | None) -> BatchTask:
        return BatchTask(
            tuple(replace(t, threads=threads, host_threads=host_threads) for t in self.tasks)
        )


def convert_item(task: Task) -> dict[str, Any]:
    """Convert ``task.item``; returns its index row. ``status`` is ``"ok"`` (``reused``:
    an existing file already matched), ``"error"`` (with ``error``) or ``"differs"`` (a
    file made otherwise is in the way and ``force`` is off; nothing was written)."""
    _set_threads(task)
    _load_modalities()
    row, obj = _look(task)
    if obj is _DONE:
        return row
    try:
        import neurep

        started = time.perf_counter()
        datum = neurep.fit(obj, progress=False, **_options_for(obj, task.fit_options))
        fit_s = time.perf_counter() - started
    except Exception as error:
        return _failed(row, error)
    return _save(task, row, datum, fit_s)


def convert_batch(batch: BatchTask) -> list[dict[str, Any]]:
    """Convert every item of ``batch``; returns their index rows, in order, each as
    :func:`convert_item` makes it.

    Items are read and checked against existing files one by one; those to fit are
    grouped by adapter and signal shape, and each group is fitted with
    :func:`~neurep.fitting.pipeline.fit_datums` (stacked when it can be). An item that
    fails to read is an error row; when a group's fit raises, its items are fitted one at
    a time, so a bad item costs only itself.
    """
    if not batch.tasks:
        return []
    _set_threads(batch.tasks[0])
    _load_modalities()
    from neurep.api import prepare_fit

    rows: list[dict[str, Any]] = []
    groups: dict[Any, list[tuple[int, Any, float]]] = {}
    for position, task in enumerate(batch.tasks):
        row, obj = _look(task)
        rows.append(row)
        if obj is _DONE:
            continue
        try:
            started = time.perf_counter()
            options = _options_for(obj, task.fit_options)
            prepared = prepare_fit(obj, progress=False, **options)
            read_s = time.perf_counter() - started
        except Exception as error:
            _failed(row, error)
            continue
        key = (type(prepared.adapter), tuple(prepared.signal.shape), repr(sorted(options)))
        groups.setdefault(key, []).append((position, prepared, read_s))
    for members in groups.values():
        for position, datum, fit_s in _fit_group(members, rows):
            rows[position] = _save(batch.tasks[position], rows[position], datum, fit_s)
    return rows


def _fit_group(members: list[tuple[int, Any, float]], rows: list[dict[str, Any]]):
    """(position, datum, fit seconds) of each member that fits; failures become rows."""
    from neurep.fitting.pipeline import fit_datum, fit_datums

    first = members[0][1]
    if len(members) > 1:
        try:
            started = time.perf_counter()
            datums = fit_datums(
                [(p.obj, p.adapter, p.signal) for _, p, _ in members],
                first.preset,
                first.target,
                seeds=[p.seed for _, p, _ in members],
                progress=False,
                device=first.device,
            )
            share = (time.perf_counter() - started) / len(members)
            return [
                (position, datum, read_s + share)
                for (position, _, read_s), datum in zip(members, datums, strict=True)
            ]
        except Exception:
            pass  # one at a time below: a bad item costs only itself
    done = []
    for position, p, read_s in members:
        try:
            started = time.perf_counter()
            datum = fit_datum(
                p.obj,
                p.adapter,
                p.signal,
                p.preset,
                p.target,
                seed=p.seed,
                progress=False,
                device=p.device,
            )
            done.append((position, datum, read_s + time.perf_counter() - started))
        except Exception as error:
            _failed(rows[position], error)
    return done


def run_task(task: Task | BatchTask) -> list[dict[str, Any]]:
    """The rows of a task of either kind (what a worker runs)."""
    if isinstance(task, BatchTask):
        return convert_batch(task)
    return [convert_item(task)]


def task_error_rows(task: Task | BatchTask, error: BaseException | str) -> list[dict[str, Any]]:
    """:func:`error_row` of each item of a task whose worker failed."""
    if isinstance(task, BatchTask):
        return [error_row(t, error) for t in task.tasks]
    return [error_row(task, error)]


_DONE = object()


def _look(task: Task) -> tuple[dict[str, Any], Any]:
    """(row, the item's object) for an item to fit, or (its final row, ``_DONE``) for one
    that failed to read, already matches its existing file, or is in the way of one."""
    row = _base_row(task)
    output = Path(task.out_dir) / task.item.output
    try:
        row["source_size"], row["source_mtime_ns"] = task.item.stat()
        obj, row["source_sha256"] = task.item.read()
    except Exception as error:
        return _failed(row, error), _DONE
    existing = _existing(output)
    if existing is not None:
        made_from, metadata, file_bytes = existing
        same_settings = made_from.get("settings") == task.settings
        if same_settings and made_from.get("source_sha256") == row["source_sha256"]:
            return _finished(row, metadata, file_bytes, reused=True), _DONE
        if not same_settings and not task.force:
            row["status"] = "differs"
            row["existing_settings"] = made_from.get("settings")
            return row, _DONE
    return row, obj


def _save(task: Task, row: dict[str, Any], datum: Any, fit_s: float) -> dict[str, Any]:
    """Record the convert key in ``datum``, save it at the item's output; its row."""
    output = Path(task.out_dir) / task.item.output
    try:
        fit = dict(datum.metadata.get("fit") or {})
        fit[CONVERT_KEY] = {"source_sha256": row["source_sha256"], "settings": task.settings}
        datum.metadata = {**datum.metadata, "fit": fit}
        output.parent.mkdir(parents=True, exist_ok=True)
        file_bytes = datum.save(output)
    except Exception as error:
        return _failed(row, error)
    row["fit_s"] = round(fit_s, 3)
    return _finished(row, datum.metadata, file_bytes, reused=False)


def _options_for(obj: Any, fit_options: dict[str, Any]) -> dict[str, Any]:
    """``fit_options`` without the read options the item's modality does not take, so that
    ``resolution=64`` for a folder of meshes and images reaches the meshes only."""
    from neurep.modalities import registry

    read_options = {o for adapter in registry.adapters() for o in adapter.read_options}
    given = read_options & set(fit_options)
    if not given:
        return fit_options
    takes = set(registry.resolve(obj, fit_options.get("modality")).read_options)
    return {k: v for k, v in fit_options.items() if k not in given or k in takes}


def error_row(task: Task, error: BaseException | str) -> dict[str, Any]:
    """The row of an item whose worker failed outside :func:`convert_item` (a lost worker)."""
    return _failed(_base_row(task), error)


def _base_row(task: Task) -> dict[str, Any]:
    return {
        **task.item.index_fields(),
        "output": task.item.output,
        "settings": task.settings,
        "options": task.options,
        "neurep": __version__,
    }


def _finished(
    row: dict[str, Any], metadata: dict[str, Any], file_bytes: int, *, reused: bool
) -> dict[str, Any]:
    fit = metadata.get("fit") or {}
    row.setdefault("fit_s", fit.get("wall_time_s"))
    row.update(
        bytes=file_bytes,
        quality=metadata.get("quality"),
        modality=(metadata.get("modality") or {}).get("name"),
        device=fit.get("device"),
        status="ok",
        time=_now(),
    )
    if reused:
        row["reused"] = True
    return row


def _failed(row: dict[str, Any], error: BaseException | str) -> dict[str, Any]:
    if isinstance(error, BaseException):
        text = " ".join(str(error).split()) or "no message"
        message = f"{type(error).__name__}: {text}"
    else:
        message = error
    row.update(status="error", error=message, time=_now())
    return row


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _existing(output: Path) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """(``fit.convert`` record, metadata, size) of the file at ``output``; None when there
    is none. A file that cannot be read as .nrep counts as made otherwise (``{}``)."""
    if not output.exists():
        return None
    from neurep.formats import open_nrep

    try:
        with open_nrep(output) as reader:
            metadata = reader.metadata
            size = reader.nbytes
    except Exception:
        return {}, {}, 0
    made_from = (metadata.get("fit") or {}).get(CONVERT_KEY)
    return (made_from if isinstance(made_from, dict) else {}), metadata, size


_modalities_lock = threading.Lock()


def _load_modalities() -> None:
    """Import every modality once, under a lock: a Dask worker may start several items at
    once in threads, and none may see the table half-filled."""
    with _modalities_lock:
        from neurep.modalities import registry

        registry.adapters()


def _set_threads(task: Task) -> None:
    threads = task.threads
    if threads is None and task.host_threads is not None:
        threads = _dask_threads(task.host_threads)
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _dask_threads(host_threads: dict[str, int]) -> int | None:
    """Torch threads for this Dask worker: the host's cores over its worker threads."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    host = worker.address.rsplit(":", 1)[0].split("://", 1)[-1]
    sharing = host_threads.get(host) or worker.state.nthreads
    return max(1, _cores() // max(1, sharing))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
