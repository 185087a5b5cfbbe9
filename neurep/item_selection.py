"""Which items of a datum a call means: ``None`` (all), an index, a slice or indices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Items", "contiguous_runs", "item_indices", "plain_integer"]

#: What :meth:`NeuralDatum.decode` takes to pick items: all (None), an index, a slice, or
#: a sequence of indices.
Items = None | int | slice | Sequence[int]


def item_indices(items: Items, count: int) -> list[int]:
    """``items`` as a list of indices in 0..count-1; IndexError or TypeError otherwise."""
    if items is None:
        return list(range(count))
    if isinstance(items, slice):
        chosen = list(range(*items.indices(count)))
        if not chosen:
            raise IndexError(f"the slice {items} selects none of the {count} items")
        return chosen
    if isinstance(items, bool) or not isinstance(items, int | np.integer | Sequence | np.ndarray):
        raise TypeError(f"items must be an index, a slice or indices, not {items!r:.40}")
    chosen = [items] if isinstance(items, int | np.integer) else list(items)
    out = []
    for index in chosen:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"item indices must be integers, not {index!r:.40}")
        if not -count <= index < count:
            raise IndexError(f"item {index} is out of range for {count} items")
        out.append(int(index) % count)
    if not out:
        raise IndexError("the selection holds no items")
    return out


def contiguous_runs(indices: list[int]) -> list[slice]:
    """[3, 4, 5, 9, 2] -> [slice(3, 6), slice(9, 10), slice(2, 3)]: the reads, in order."""
    runs: list[slice] = []
    for index in indices:
        if runs and runs[-1].stop == index:
            runs[-1] = slice(runs[-1].start, index + 1)
        else:
            runs.append(slice(index, index + 1))
    return runs


def plain_integer(value: Any) -> int:
    """``value`` if it is a plain int (not a bool, float or string), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r:.40}")
    return value
