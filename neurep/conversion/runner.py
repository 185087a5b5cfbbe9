"""Where items are converted: in this process, in local worker processes, or on Dask.

Every runner is a context manager whose ``results(tasks)`` yields ``(task, row)`` as items
finish, in any order, keeping only a bounded number of tasks in flight. Rows are written
to the index by the caller (the parent process) alone. A task is one item (``Task``) or
several (``BatchTask``, from ``convert(batch=K)``), run and retried as one; its items'
rows are yielded one by one.

- :class:`SerialRunner`: one item after another, here.
- :class:`ProcessRunner`: ``workers`` spawned processes (``concurrent.futures``), each with
  ``cores // workers`` torch threads and, on a machine with several GPUs, its own GPU. A
  worker that dies (out of memory, killed) breaks the pool: a new pool is started and the
  items that were in flight are tried again, at most :data:`ATTEMPTS` times each.
  Workers exit by themselves when the parent process is gone.
- :class:`DaskRunner`: a ``distributed.Client`` on a ``LocalCluster`` it starts or on an
  existing scheduler. Dask reschedules the tasks of a lost worker elsewhere; ``retries``
  covers other transient failures.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

from neurep.conversion.sources import INSTALL_HINT
from neurep.conversion.work import (
    BatchTask,
    Task,
    convert_batch,
    convert_item,
    task_error_rows,
)
from neurep.errors import InputError, MissingDependencyError

__all__ = ["ATTEMPTS", "DaskRunner", "ProcessRunner", "SerialRunner", "make_runner"]

#: How many times an item is tried when its local worker process dies.
ATTEMPTS = 3
#: Dask task retries (on exceptions; a lost worker is rescheduled besides these).
DASK_RETRIES = 2
_PARENT_POLL_S = 1.0

Results = Iterator[tuple[Task, dict[str, Any]]]


def _pairs(task: Task | BatchTask, result: Any) -> list[tuple[Task, dict[str, Any]]]:
    """(item task, row) of each item of ``task``, from what its worker returned."""
    if isinstance(task, BatchTask):
        return list(zip(task.tasks, result, strict=True))
    return [(task, result)]


def _failed_pairs(task: Task | BatchTask, error: BaseException | str):
    items = task.tasks if isinstance(task, BatchTask) else (task,)
    return list(zip(items, task_error_rows(task, error), strict=True))


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def make_runner(
    workers: int = 1, dask_local: int | None = None, scheduler: str | None = None
) -> SerialRunner | ProcessRunner | DaskRunner:
    """The runner for the options: ``scheduler`` address, else ``dask_local`` workers, else
    ``workers`` local processes (1: this process)."""
    chosen = [
        name
        for name, on in (
            ("workers", workers != 1),
            ("dask_local", dask_local),
            ("scheduler", scheduler),
        )
        if on
    ]
    if len(chosen) > 1:
        raise InputError(f"choose one of workers, dask_local and scheduler, not {chosen}")
    if scheduler is not None:
        return DaskRunner(address=scheduler)
    if dask_local is not None:
        if dask_local < 1:
            raise InputError(f"dask_local must be a positive number of workers, not {dask_local}")
        return DaskRunner(local_workers=dask_local)
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    return SerialRunner() if workers == 1 else ProcessRunner(workers)


class SerialRunner:
    """Items one after another in this process, with torch's own thread count."""

    description = "this process"

    def __enter__(self) -> SerialRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def results(self, tasks: Iterable[Task | BatchTask]) -> Results:
        for task in tasks:
            if isinstance(task, BatchTask):
                yield from _pairs(task, convert_batch(task))
            else:
                yield task, convert_item(task)


class ProcessRunner:
    """``workers`` spawned processes of ``cores // workers`` torch threads each.

    ``function`` is what runs a one-item task (tests give another; it must be importable);
    a :class:`BatchTask` runs :func:`convert_batch`.
    """

    def __init__(self, workers: int, function: Any = convert_item) -> None:
        self.workers = workers
        self.function = function
        self.threads = max(1, cores() // workers)
        self.description = f"{workers} processes x {self.threads} threads"
        self._context = multiprocessing.get_context("spawn")
        self._counter = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessRunner:
        self._counter = self._context.Value("i", 0)
        self._pool = self._new_pool()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(os.getpid(), self.threads, self._counter),
        )

    def results(self, tasks: Iterable[Task | BatchTask]) -> Results:
        assert self._pool is not None, "use the runner as a context manager"
        pending = iter(tasks)
        again: deque[tuple[Task, int]] = deque()
        in_flight: dict[Any, tuple[Task, int, int]] = {}  # future -> (task, tries, pool)
        generation = 0
        limit = 2 * self.workers
        while True:
            while len(in_flight) < limit:
                if again:
                    task, tries = again.popleft()
                else:
                    task = next(pending, None)
                    tries = 0
                    if task is None:
                        break
                function = convert_batch if isinstance(task, BatchTask) else self.function
                future = self._pool.submit(function, task)
                in_flight[future] = (task, tries, generation)
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                task, tries, pool = in_flight.pop(future)
                try:
                    row = future.result()
                except BrokenProcessPool:
                    broken = broken or pool == generation
                    if tries + 1 < ATTEMPTS:
                        again.append((task, tries + 1))
                        continue
                    died = f"a worker process died {ATTEMPTS} times on it"
                    yield from _failed_pairs(task, died)
                    continue
                except Exception as error:  # the task could not be sent or its row returned
                    yield from _failed_pairs(task, error)
                    continue
                yield from _pairs(task, row)
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                generation += 1


def _start_worker(parent: int, threads: int, counter: Any) -> None:
    """Local worker set-up: torch threads, a GPU of its own, and exit with the parent."""
    import torch

    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(index % torch.cuda.device_count())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)  # orphaned (the parent was killed): stop rather than fit for no one

    threading.Thread(target=watch, name="neurep-parent-watch", daemon=True).start()


class DaskRunner:
    """Tasks on a Dask cluster: a ``LocalCluster`` of ``local_workers`` processes, or the
    scheduler at ``address`` (``tcp://HOST:PORT``).

    On a cluster, workers need neurep installed and the same paths (a shared folder) for
    the sources and the output.
    """

    def __init__(self, *, address: str | None = None, local_workers: int | None = None) -> None:
        _distributed()  # fail now, before any folder is made, when it is missing
        self.address = address
        self.local_workers = local_workers
        self.description = address or f"Dask LocalCluster of {local_workers} workers"
        self._client = None
        self._cluster = None
        self._host_threads: dict[str, int] | None = None
        self._threads: int | None = None

    def __enter__(self) -> DaskRunner:
        distributed = _distributed()
        if self.address is not None:
            self._client = distributed.Client(self.address, timeout="30s")
            self._host_threads = self._threads_per_host()
            return self
        self._cluster = distributed.LocalCluster(
            n_workers=self.local_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        try:
            self._client = distributed.Client(self._cluster)
        except BaseException:
            self._cluster.close()
            raise
        self._threads = max(1, cores() // self.local_workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _threads_per_host(self) -> dict[str, int]:
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed lists every worker without being asked
            info = self._client.scheduler_info()
        hosts: dict[str, int] = {}
        for worker in info.get("workers", {}).values():
            host = worker.get("host")
            if host:
                hosts[host] = hosts.get(host, 0) + int(worker.get("nthreads") or 1)
        return hosts

    def results(self, tasks: Iterable[Task | BatchTask]) -> Results:
        distributed = _distributed()
        client = self._client
        assert client is not None, "use the runner as a context manager"
        workers = client.scheduler_info().get("workers", {})
        limit = max(64, 4 * sum(int(w.get("nthreads") or 1) for w in workers.values()))
        pending = iter(tasks)
        in_flight: dict[str, Task | BatchTask] = {}
        finished = distributed.as_completed()

        def submit() -> bool:
            task = next(pending, None)
            if task is None:
                return False
            if isinstance(task, BatchTask):
                task = task.with_threads(self._threads, self._host_threads)
                function = convert_batch
            else:
                task = replace(task, threads=self._threads, host_threads=self._host_threads)
                function = convert_item
            future = client.submit(function, task, retries=DASK_RETRIES, pure=False)
            in_flight[future.key] = task
            finished.add(future)
            return True

        while len(in_flight) < limit and submit():
            pass
        for future in finished:
            task = in_flight.pop(future.key)
            try:
                pairs = _pairs(task, future.result())
            except Exception as error:  # KilledWorker: lost too often while running it
                pairs = _failed_pairs(task, error)
            future.release()
            yield from pairs
            submit()


def _distributed():
    try:
        import distributed
    except ImportError as error:
        raise MissingDependencyError(
            f"converting on Dask (--dask-local, --scheduler) needs distributed: {INSTALL_HINT}"
        ) from error
    return distributed
