"""The compact quantisation layout of format 1.1 (``qinfo`` version 2).

Version 1 lists every tensor (name, dtype, shape, stored name, method, bits, ...) and stores
each under its own safetensors name. Version 2 lists nothing the decoder configuration
implies: the reader rebuilds the decoder on the meta device, which gives the state dict's
names, dtypes, shapes and order, and this module turns a version-2 description back into
version 1 (which :mod:`neurep.formats._qinfo` validates as before)::

    stored2, q2 = compact_tensors(stored1, q1, order)        # writer
    stored1, q1, _ = expand_tensors(stored2, q2, expected)   # reader, expected from the decoder

Weights, version 2: ``{"version": 2, "precision": p, "layout": s}``, ``s`` one letter per
state-dict tensor, in state-dict order: ``f``/``h``/``b`` cast to float32/float16/bfloat16,
``r`` integer tensor kept as is, ``t`` affine per tensor, a digit ``k`` affine per channel
along axis ``k``. Affine codes have ``bits`` of ``p`` and are bit-packed iff bits < 8.
The safetensors member holds at most these 1-D tensors, each the concatenation, in layout
order, of its tensors' C-order data: ``codes`` (uint8: each affine tensor's codes, packed
ones taking ``ceil(n * bits / 8)`` bytes), ``float32`` / ``float16`` / ``bfloat16`` (casts),
``params`` (float32: per affine tensor, C scales then C offsets) and ``raw_<dtype>`` (integer
tensors); a tensor is present iff some letter of the layout uses it.

Embedding, version 2: ``{"version": 2, "precision": p}`` plus, for integer ``p``, ``scale``
and ``offset`` (lists of C numbers) and ``axis`` (only when per channel); dtype and shape
are the embedding array's own.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from neurep.formats._qinfo import (
    DTYPE_NAMES,
    FLOAT_DTYPES,
    PARAMS_TENSOR,
    PRECISIONS,
    QINFO_VERSION,
    TORCH_DTYPES,
    expected_stored,
    packed_len,
    require,
)

__all__ = ["COMPACT_VERSION", "compact_array", "compact_tensors", "expand_array", "expand_tensors"]

COMPACT_VERSION = 2
_CAST_LETTERS = {"float32": "f", "float16": "h", "bfloat16": "b"}
_LETTER_CASTS = {v: k for k, v in _CAST_LETTERS.items()}
_CODES, _PARAMS = "codes", "params"


def _bits(precision: str) -> int | None:
    return int(precision[3:]) if precision.startswith("int") else None


def compact_tensors(
    stored: dict[str, torch.Tensor], qinfo: dict, order: list[str]
) -> tuple[dict[str, torch.Tensor], dict]:
    """Version-1 ``(stored, qinfo)`` of :func:`quantize_tensors` -> version 2.

    order: the state dict's names in its own order (what the reader's decoder will list).
    Each returned tensor is 1-D (see the module docstring).
    """
    entries = qinfo["tensors"]
    if sorted(order) != sorted(entries):
        raise ValueError("order must name exactly the quantised tensors")
    bits = _bits(qinfo["precision"])
    params = stored.get(PARAMS_TENSOR)
    parts: dict[str, list[torch.Tensor]] = {}
    letters = []
    for name in order:
        e = entries[name]
        data = stored[e["stored"]].reshape(-1)
        if e["method"] == "cast":
            letters.append(_CAST_LETTERS[e["stored_dtype"]])
            parts.setdefault(e["stored_dtype"], []).append(data)
        elif e["method"] == "raw":
            letters.append("r")
            parts.setdefault(f"raw_{e['dtype']}", []).append(data)
        else:  # affine at the precision's bits, packed below 8 (what quantize_tensors writes)
            if e["bits"] != bits or e["packed"] != (bits < 8):
                raise ValueError(f"{name!r} is not at the precision's bits and packing")
            letters.append("t" if e["granularity"] == "tensor" else str(e["axis"]))
            c = 1 if e["granularity"] == "tensor" else e["shape"][e["axis"]]
            parts.setdefault(_CODES, []).append(data)
            parts.setdefault(_PARAMS, []).append(params[e["params"] : e["params"] + 2 * c])
    if bits is None:  # float precisions keep names and shapes (plain safetensors reads them)
        out = {name: stored[entries[name]["stored"]] for name in order}
    else:
        out = {key: torch.cat(chunks).contiguous() for key, chunks in parts.items()}
    return out, {
        "version": COMPACT_VERSION,
        "precision": qinfo["precision"],
        "layout": "".join(letters),
    }


def expand_tensors(
    stored: Any, qinfo: Any, expected: dict[str, tuple[str, tuple[int, ...]]]
) -> tuple[dict[str, torch.Tensor], dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """Version-2 ``(stored, qinfo)`` -> version 1, checked against the decoder's tensors,
    and what :func:`~neurep.formats._qinfo.expected_stored` says of that version 1.

    expected: name -> (dtype name, shape) in state-dict order (from the decoder configuration).
    Every stored tensor must be 1-D with exactly the elements the layout implies; raises
    :class:`FormatError` otherwise. Work is bounded by ``expected`` and the stored sizes.
    The returned qinfo is shared between calls with the same description: do not modify it.
    """
    spans, _, _, v1, v1_expected = check_compact(stored, qinfo, expected)
    out = {name: stored[key].reshape(-1)[a:b].reshape(shape) for key, a, b, shape, name in spans}
    if _PARAMS in stored:
        out[PARAMS_TENSOR] = stored[_PARAMS]
    return out, v1, v1_expected


def check_compact(
    stored: Any, qinfo: Any, expected: dict[str, tuple[str, tuple[int, ...]]]
) -> tuple[list, dict, dict, dict, dict]:
    """Check a version-2 ``(stored, qinfo)`` against the decoder's tensors (FormatError
    otherwise) and return the layout's plan (see :func:`layout_plan`)."""
    require(isinstance(qinfo, dict), "quantization info must be an object")
    require(
        set(qinfo) == {"version", "precision", "layout"},
        "version 2 needs exactly 'version', 'precision' and 'layout'",
    )
    precision, layout = qinfo["precision"], qinfo["layout"]
    require(
        isinstance(precision, str) and precision in PRECISIONS, f"unknown precision {precision!r}"
    )
    require(
        isinstance(layout, str) and len(layout) == len(expected),
        f"'layout' must have one letter for each of the decoder's {len(expected)} tensors",
    )
    require(isinstance(stored, dict), "stored tensors must be a dict")
    plan = layout_plan(precision, layout, tuple(expected.items()))
    _, sizes, dtypes, _, _ = plan
    got = sorted(stored)[:6]
    require(set(stored) == set(sizes), f"stored tensors {got}, expected {sorted(sizes)[:6]}")
    for key, shape in sizes.items():
        t, want = stored[key], dtypes[key]
        ok = isinstance(t, torch.Tensor) and DTYPE_NAMES.get(t.dtype) == want
        require(ok and tuple(t.shape) == shape, f"{key!r} must be {want} {list(shape)}")
    return plan


@functools.lru_cache(maxsize=256)
def layout_plan(
    precision: str, layout: str, expected: tuple[tuple[str, tuple[str, tuple[int, ...]]], ...]
) -> tuple[list, dict, dict, dict, dict]:
    """What a layout implies for a decoder's tensors, the same for every file of one
    architecture and precision (cached; FormatError results are not): the spans (stored
    tensor, start, end, shape, name), the stored tensors' shapes and dtypes, the version-1
    qinfo and what :func:`~neurep.formats._qinfo.expected_stored` says of it."""
    bits = _bits(precision)
    entries: dict[str, dict] = {}
    sizes: dict[str, Any] = {}  # stored tensor -> elements it must have (then: its shape)
    spans: list[tuple[str, int, int, tuple[int, ...], str]] = []  # (tensor, start, end, ...)
    for (name, (dtype, shape)), letter in zip(expected, layout, strict=True):
        require(dtype in TORCH_DTYPES, f"{name!r}: the decoder has a {dtype} tensor")
        n = math.prod(shape)
        floating = TORCH_DTYPES[dtype].is_floating_point
        entry: dict[str, Any] = {"dtype": dtype, "shape": list(shape), "stored": name}
        if letter in _LETTER_CASTS or letter == "r":
            require(
                floating == (letter != "r"), f"{name!r}: letter {letter!r} for a {dtype} tensor"
            )
            key = _LETTER_CASTS.get(letter) or f"raw_{dtype}"
            entry.update(
                method="cast" if letter != "r" else "raw", stored_dtype=key.removeprefix("raw_")
            )
            spans.append((key, sizes.get(key, 0), sizes.get(key, 0) + n, tuple(shape), name))
            sizes[key] = sizes.get(key, 0) + n
            entries[name] = entry
            continue
        ok = (
            bits is not None
            and floating
            and (letter == "t" or (letter in "0123456789" and int(letter) < len(shape)))
        )
        require(
            ok, f"{name!r}: letter {letter!r} does not fit a {dtype} {list(shape)} at {precision}"
        )
        c = 1 if letter == "t" else shape[int(letter)]
        packed = bits < 8
        length = packed_len(n, bits) if packed else n
        start = sizes.get(_CODES, 0)
        spans.append((_CODES, start, start + length, (length,) if packed else tuple(shape), name))
        sizes[_CODES] = start + length
        entry.update(
            method="affine",
            bits=bits,
            granularity="tensor" if letter == "t" else "channel",
            packed=packed,
        )
        if letter != "t":
            entry["axis"] = int(letter)
        entry["params"] = sizes.get(_PARAMS, 0)
        sizes[_PARAMS] = sizes.get(_PARAMS, 0) + 2 * c
        entries[name] = entry
    if bits is None:  # float precisions: each tensor under its own name, its own shape
        sizes = {name: shape for _, _, _, shape, name in spans}
        spans = [(name, 0, math.prod(shape), shape, name) for _, _, _, shape, name in spans]
        dtypes = {name: e["stored_dtype"] for name, e in entries.items()}
    else:
        sizes = {key: (n,) for key, n in sizes.items()}
        dtypes = {key: key.removeprefix("raw_") for key in sizes}
        dtypes.update({_CODES: "uint8", _PARAMS: "float32"})
    v1: dict[str, Any] = {"version": QINFO_VERSION, "precision": precision}
    if _PARAMS in sizes:
        v1["params_tensor"] = PARAMS_TENSOR
    v1["tensors"] = entries
    return spans, sizes, dtypes, v1, expected_stored(v1)


def compact_array(qinfo: dict) -> dict:
    """An array's version-1 qinfo (:func:`quantize_array`) -> version 2 (module docstring)."""
    out: dict[str, Any] = {"version": COMPACT_VERSION, "precision": qinfo["precision"]}
    if qinfo["method"] == "affine":
        if qinfo["granularity"] == "channel":
            out["axis"] = qinfo["axis"]
        out.update(scale=qinfo["scale"], offset=qinfo["offset"])
    return out


def expand_array(qinfo: Any, shape: tuple[int, ...]) -> dict:
    """An array's version-2 qinfo + the codes' shape -> version 1 (validated by the caller)."""
    require(isinstance(qinfo, dict), "quantization info must be an object")
    precision = qinfo.get("precision")
    require(precision in PRECISIONS, f"unknown precision {precision!r}")
    bits = _bits(precision)
    allowed = {"version", "precision"} | (set() if bits is None else {"axis", "scale", "offset"})
    require(set(qinfo) <= allowed, f"unknown keys {sorted(set(qinfo) - allowed)[:5]}")
    v1: dict[str, Any] = {"version": QINFO_VERSION, "precision": precision}
    v1.update(dtype="float32", shape=list(shape))
    if bits is None:
        assert precision in FLOAT_DTYPES
        return {**v1, "method": "cast", "stored_dtype": precision}
    v1.update(method="affine", bits=bits, stored_dtype="uint8")
    v1["granularity"] = "channel" if "axis" in qinfo else "tensor"
    if "axis" in qinfo:
        v1["axis"] = qinfo["axis"]
    return {**v1, "scale": qinfo.get("scale"), "offset": qinfo.get("offset")}
