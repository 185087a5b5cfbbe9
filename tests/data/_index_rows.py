"""What a converted folder's index says, read plainly (the tests' own reading of it)."""

from __future__ import annotations

import json
from pathlib import Path


def ok_rows(folder: Path) -> list[dict]:
    """The latest ok index row of each output, in order of the output's first line."""
    latest: dict[str, dict] = {}
    for line in (folder / "index.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["output"]] = row
    return [row for row in latest.values() if row["status"] == "ok"]


def ok_outputs(folder: Path) -> list[str]:
    return [row["output"] for row in ok_rows(folder)]
