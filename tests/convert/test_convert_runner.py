"""Local worker processes: a worker that dies costs only a retry of the items it held."""

from __future__ import annotations

from _convert_helpers import die_once_per_marker

from neurep.conversion.runner import ProcessRunner
from neurep.conversion.sources import FileItem
from neurep.conversion.work import Task


def test_a_dead_worker_process_costs_a_retry_of_its_items_only(tmp_path):
    names = ["a.nrep", "die.nrep", "b.nrep"]
    tasks = [Task(FileItem(str(tmp_path / n), n, n), str(tmp_path), {}, "s", {}) for n in names]

    with ProcessRunner(1, function=die_once_per_marker) as runner:
        rows = {task.item.output: row for task, row in runner.results(tasks)}

    assert set(rows) == set(names)
    assert all(row["status"] == "ok" for row in rows.values())
    assert (tmp_path / "die.nrep.died").exists()
