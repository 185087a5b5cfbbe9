"""Basic-index selections (ints, slices, Ellipsis) as per-axis ranges, and their chunk parts.

Nothing here is proportional to an axis' length: a selection is one ``range`` per axis, and
the part of it inside one chunk is computed arithmetically, so a hostile shape cannot make
:meth:`NrepReader.read_array` allocate index vectors or loop over absent chunks.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class AxisSelection:
    """The selected positions ``positions`` of one axis; ``keep`` is False for an int index."""

    positions: range
    keep: bool


@dataclasses.dataclass(frozen=True)
class ChunkPart:
    """The selected elements inside one chunk of one axis.

    ``output`` slices the (full-rank) result along that axis; ``inside`` slices the chunk.
    """

    output: slice
    inside: slice


def normalize_selection(selection: Any, shape: tuple[int, ...]) -> list[AxisSelection]:
    """Resolve ``selection`` on an array of ``shape``; one :class:`AxisSelection` per axis.

    Raises ``IndexError`` / ``TypeError`` like numpy for out-of-range or unsupported indices.
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
    axes = []
    for axis, (item, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            axes.append(AxisSelection(range(*item.indices(size)), keep=True))
            continue
        try:
            if isinstance(item, bool | np.bool_):  # numpy reads a bool as a mask, not 0/1
                raise TypeError
            index = operator.index(item)
        except TypeError:
            raise TypeError(
                "read_array selections may hold ints, slices and one Ellipsis, "
                f"got {type(item).__name__}"
            ) from None
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of bounds for axis {axis} with size {size}")
        axes.append(AxisSelection(range(index % size, index % size + 1), keep=False))
    return axes


def touched_chunk_count(positions: range, chunk: int) -> int:
    """How many chunks of size ``chunk`` hold at least one of ``positions`` (O(1))."""
    if not positions:
        return 0
    if abs(positions.step) >= chunk:
        return len(positions)  # every position in its own chunk
    return abs(positions[-1] // chunk - positions[0] // chunk) + 1


def chunk_part(positions: range, chunk: int, chunk_id: int) -> ChunkPart | None:
    """The part of ``positions`` inside chunk ``chunk_id`` (None if empty), in O(1)."""
    low, high = chunk_id * chunk, (chunk_id + 1) * chunk  # the chunk covers [low, high)
    start, step, count = positions.start, positions.step, len(positions)
    if step > 0:
        first = max(0, -((start - low) // step))  # ceil((low - start) / step)
        stop = min(count, -((start - high) // step))  # ceil((high - start) / step)
    else:
        first = max(0, (start - high) // -step + 1)
        stop = min(count, (start - low) // -step + 1)
    if first >= stop:
        return None
    begin = positions[first] - low
    end = positions[stop - 1] - low + (1 if step > 0 else -1)
    return ChunkPart(slice(first, stop), slice(begin, end if end >= 0 else None, step))


def touched_chunks(positions: range, chunk: int) -> Iterator[tuple[int, ChunkPart]]:
    """(chunk id, part) for every chunk holding some of ``positions``, in output order."""
    k = 0
    while k < len(positions):
        chunk_id = positions[k] // chunk
        part = chunk_part(positions, chunk, chunk_id)
        assert part is not None and part.output.start == k
        yield chunk_id, part
        k = part.output.stop
