"""Basic-index selections (ints, slices, Ellipsis) turned into per-axis index lists.

Used by :meth:`NrepReader.read_array` to find which chunks a selection touches, so only those
chunks are read.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


def normalize_selection(
    selection: Any, shape: tuple[int, ...]
) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Resolve ``selection`` on an array of ``shape``.

    Returns one sorted-as-requested index vector per axis (int64, values in ``[0, n)``) and
    the output shape (axes indexed by an int are dropped). Raises ``IndexError`` /
    ``TypeError`` like numpy for out-of-range or unsupported selections.
    """
    if selection is None:
        items: tuple = ()
    elif isinstance(selection, tuple):
        items = selection
    else:
        items = (selection,)
    ellipses = sum(item is Ellipsis for item in items)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    explicit = len(items) - ellipses
    if explicit > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, "
            f"but {explicit} were indexed"
        )
    if ellipses:
        position = next(i for i, item in enumerate(items) if item is Ellipsis)
        fill = (slice(None),) * (len(shape) - explicit)
        items = items[:position] + fill + items[position + 1 :]
    items = items + (slice(None),) * (len(shape) - len(items))
    indices: list[np.ndarray] = []
    out_shape: list[int] = []
    for axis, (item, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            vector = np.arange(*item.indices(size), dtype=np.int64)
            out_shape.append(len(vector))
        else:
            try:
                position = operator.index(item)
            except TypeError:
                raise TypeError(
                    "read_array selections may hold ints, slices and one Ellipsis, "
                    f"got {type(item).__name__}"
                ) from None
            if not -size <= position < size:
                raise IndexError(
                    f"index {position} is out of bounds for axis {axis} with size {size}"
                )
            vector = np.array([position % size], dtype=np.int64)
        indices.append(vector)
    return indices, tuple(out_shape)
