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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurep._version import __version__
from neurep.conversion.sources import Item

__all__ = ["CONVERT_KEY", "Task", "convert_item", "error_row"]

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


def convert_item(task: Task) -> dict[str, Any]:
    """Convert ``task.item``; returns its index row. ``status`` is ``"ok"`` (``reused``:
    an existing file already matched), ``"error"`` (with ``error``) or ``"differs"`` (a
    file made otherwise is in the way and ``force`` is off; nothing was written)."""
    _set_threads(task)
    _load_modalities()
    row = _base_row(task)
    output = Path(task.out_dir) / task.item.output
    try:
        row["source_size"], row["source_mtime_ns"] = task.item.stat()
        obj, row["source_sha256"] = task.item.read()
    except Exception as error:
        return _failed(row, error)
    existing = _existing(output)
    if existing is not None:
        made_from, metadata, file_bytes = existing
        same_settings = made_from.get("settings") == task.settings
        if same_settings and made_from.get("source_sha256") == row["source_sha256"]:
            return _finished(row, metadata, file_bytes, reused=True)
        if not same_settings and not task.force:
            row["status"] = "differs"
            row["existing_settings"] = made_from.get("settings")
            return row
    try:
        import neurep

        started = time.perf_counter()
        datum = neurep.fit(obj, progress=False, **_options_for(obj, task.fit_options))
        fit_s = time.perf_counter() - started
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
