"""Format 1.1's compact weights dequantised in one pass, straight to the flat vector.

:func:`~neurep.formats.quantize.dequantize_tensors` rebuilds a state dict tensor by tensor,
a dozen small numpy steps each, which is most of the cost of reading a small datum's
weights (a data loader reads thousands). For the layouts neurep writes by default, where
every tensor is a float cast or 8-bit affine codes, :func:`compact_vector` does the same
arithmetic (float64 maths, one rounding to float32, so the values are identical) on each
stored blob at once, with per-element scale and offset indices worked out once per
architecture, and returns the parameters in state-dict order: the layout of
:mod:`neurep.models.layout`.

It returns None, and the caller takes the tensor-by-tensor path, for every other layout
(bit-packed codes, raw integer tensors, version 1) and whenever a value check fails, so
that path alone decides what is wrong and words the error.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from neurep.formats._compact import COMPACT_VERSION, check_compact, layout_plan

__all__ = ["compact_vector"]

_CODES, _PARAMS = "codes", "params"


def compact_vector(
    stored: Any, qinfo: Any, expected: dict[str, tuple[str, tuple[int, ...]]]
) -> np.ndarray | None:
    """The weights as one (P,) float32 vector in ``expected``'s order, or None (see above).

    ``stored`` and ``qinfo`` as read from a file; ``expected``: name -> (dtype name, shape)
    of the decoder's state dict. Raises FormatError for a malformed layout or stored tensors
    of the wrong dtypes or sizes.
    """
    if not isinstance(qinfo, dict) or qinfo.get("version") != COMPACT_VERSION:
        return None
    check_compact(stored, qinfo, expected)  # the layout and the stored tensors' dtypes, sizes
    plan = _vector_plan(qinfo["precision"], qinfo["layout"], tuple(expected.items()))
    if plan is None:
        return None
    pieces, scale_index, offset_index, scale_positions = plan
    blobs: dict[str, np.ndarray] = {}
    if scale_index is not None:
        params = stored[_PARAMS].numpy()
        if not np.isfinite(params).all() or (params[scale_positions] < 0).any():
            return None
        codes = stored[_CODES].numpy().astype(np.float64)
        scales = params[scale_index].astype(np.float64)
        with np.errstate(over="ignore"):  # an overflow to inf is refused below
            values = params[offset_index].astype(np.float64) + scales * codes
            blobs[_CODES] = values.astype(np.float32)
    for key in {key for key, _, _ in pieces} - {_CODES}:
        blobs[key] = stored[key].to(torch.float32).numpy().reshape(-1)
    vector = np.concatenate([blobs[key][start:end] for key, start, end in pieces])
    return vector if np.isfinite(vector).all() else None


@functools.lru_cache(maxsize=256)
def _vector_plan(
    precision: str, layout: str, expected: tuple[tuple[str, tuple[str, tuple[int, ...]]], ...]
) -> tuple[list, np.ndarray | None, np.ndarray | None, np.ndarray | None] | None:
    """(pieces in state-dict order, per-code scale and offset indices into ``params``, the
    indices of every scale) for a layout of float casts and unpacked 8-bit codes; None for
    any other layout."""
    spans, _, _, v1, _ = layout_plan(precision, layout, expected)
    entries = v1["tensors"]
    if not all(
        entries[name]["method"] == "cast"
        or (entries[name]["method"] == "affine" and not entries[name]["packed"])
        for name, _ in expected
    ):
        return None
    pieces, scale_parts, offset_parts, scales = [], [], [], []
    for key, start, end, _, name in spans:
        pieces.append((key, start, end))
        entry = entries[name]
        if entry["method"] != "affine":
            continue
        shape = tuple(entry["shape"])
        first = entry["params"]
        if entry["granularity"] == "tensor":
            channel = np.zeros(math.prod(shape), np.int64)
            count = 1
        else:
            axis = entry["axis"]
            count = shape[axis]
            inner = math.prod(shape[axis + 1 :])
            channel = (np.arange(math.prod(shape)) // inner) % count
        scale_parts.append(first + channel)
        offset_parts.append(first + count + channel)
        scales.append(first + np.arange(count))
    if not scale_parts:
        return pieces, None, None, None
    return (
        pieces,
        np.concatenate(scale_parts),
        np.concatenate(offset_parts),
        np.concatenate(scales),
    )
