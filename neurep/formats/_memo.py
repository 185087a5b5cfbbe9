"""A memo of checks that passed: many files of one dataset hold byte-identical small
documents (an embedding's ``zarr.json``, the safetensors header of one architecture), and a
check of bytes is a pure function of them, so its result for the same bytes can be reused.
Only successes are kept (a failure raises, naming its own file, every time)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PassedChecks(Generic[T]):
    """Results of a pure check, by the exact inputs it passed; at most ``size`` kept
    (all dropped when full: a dataset has few distinct documents)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._results: dict[Hashable, T] = {}

    def get(self, key: Hashable, check: Callable[[], T]) -> T:
        """``check()``'s result for ``key``, computed once while it is kept."""
        try:
            return self._results[key]
        except KeyError:
            pass
        result = check()
        if len(self._results) >= self.size:
            self._results.clear()
        self._results[key] = result
        return result
