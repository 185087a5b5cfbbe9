"""Validation of quantisation info (``qinfo``) read from a file that may be hostile.

The layouts are described in docs/FORMAT.md (§8, and §12 for the compact one). Each check
raises :class:`neurep.FormatError`, never another exception, and works from ``qinfo`` alone,
so a reader knows what the stored tensors or codes must be before it reads any payload.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurep.errors import FormatError

__all__ = [
    "DTYPE_NAMES",
    "FLOAT_DTYPES",
    "PARAMS_TENSOR",
    "PRECISIONS",
    "QINFO_VERSION",
    "TORCH_DTYPES",
    "expected_array",
    "expected_stored",
    "packed_len",
    "require",
]

QINFO_VERSION = 1
PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int7", "int6", "int5", "int4")
PARAMS_TENSOR = "__qparams__"
_MAX_NDIM = 32

FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TORCH_DTYPES = {
    **FLOAT_DTYPES,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


def packed_len(n: int, bits: int) -> int:
    """Bytes of ``n`` codes of ``bits`` bits, bit-packed."""
    return (n * bits + 7) // 8


def expected_stored(qinfo: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Validate the weights' ``qinfo`` and return what the safetensors member must hold.

    Returns stored name -> (dtype name, shape), computed from ``qinfo`` alone, so a reader can
    check the safetensors header before reading any payload. Raises :class:`FormatError`.
    """
    require(isinstance(qinfo, dict), "quantization info must be an object")
    require(qinfo.get("version") == QINFO_VERSION, f"unsupported version {qinfo.get('version')!r}")
    require(qinfo.get("precision") in PRECISIONS, f"unknown precision {qinfo.get('precision')!r}")
    entries = qinfo.get("tensors")
    require(isinstance(entries, dict), "'tensors' must be an object")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int]] = []
    for name, e in entries.items():
        require(isinstance(e, dict), f"entry {name!r} must be an object")
        shape = _shape(e.get("shape"), name)
        dtype = e.get("dtype")
        require(_is_key(dtype, TORCH_DTYPES), f"entry {name!r}: bad dtype {dtype!r}")
        stored = e.get("stored")
        require(isinstance(stored, str) and stored != PARAMS_TENSOR, f"{name!r}: bad 'stored'")
        require(stored not in out, f"entry {name!r}: stored tensor {stored!r} used twice")
        method = e.get("method")
        if method in ("cast", "raw"):
            sd = e.get("stored_dtype")
            if method == "cast":
                ok = _is_key(sd, FLOAT_DTYPES) and TORCH_DTYPES[dtype].is_floating_point
            else:
                ok = sd == dtype and not TORCH_DTYPES[dtype].is_floating_point
            require(ok, f"entry {name!r}: bad stored_dtype {sd!r} for method {method!r}")
            out[stored] = (sd, shape)
            continue
        require(method == "affine", f"entry {name!r}: unknown method {method!r}")
        require(TORCH_DTYPES[dtype].is_floating_point, f"entry {name!r}: affine on {dtype}")
        bits = e.get("bits")
        require(_is_int(bits) and 1 <= bits <= 8, f"entry {name!r}: bad bits {bits!r}")
        channels = _granularity(e, shape, name)
        packed = e.get("packed")
        require(isinstance(packed, bool), f"entry {name!r}: 'packed' must be true or false")
        n = math.prod(shape)
        out[stored] = ("uint8", (packed_len(n, bits),) if packed else shape)
        start = e.get("params")
        require(_is_int(start) and start >= 0, f"entry {name!r}: bad params start {start!r}")
        spans.append((start, start + 2 * channels))
    total = 0
    for start, end in sorted(spans):  # the slices must tile the parameter vector
        require(start == total, "parameter slices overlap or leave gaps")
        total = end
    if spans:
        require(
            qinfo.get("params_tensor") == PARAMS_TENSOR,
            f"'params_tensor' must be {PARAMS_TENSOR!r}",
        )
        out[PARAMS_TENSOR] = ("float32", (total,))
    else:
        require("params_tensor" not in qinfo, "'params_tensor' without affine entries")
    return out


def expected_array(qinfo: Any) -> tuple[str, tuple[int, ...]]:
    """Validate an array's ``qinfo``; return the stored codes' (numpy dtype name, shape)."""
    require(isinstance(qinfo, dict), "quantization info must be an object")
    if qinfo.get("version") != QINFO_VERSION:
        require(False, f"unsupported version {qinfo.get('version')!r}")
    if qinfo.get("precision") not in PRECISIONS:
        require(False, f"unknown precision {qinfo.get('precision')!r}")
    shape = _shape(qinfo.get("shape"), "array")
    dtype = qinfo.get("dtype")
    require(isinstance(dtype, str) and dtype in ("float16", "float32", "float64"), "bad dtype")
    method = qinfo.get("method")
    if method == "cast":
        sd = qinfo.get("stored_dtype")
        if not _is_key(sd, FLOAT_DTYPES):
            require(False, f"bad stored_dtype {sd!r}")
        return ("uint16" if sd == "bfloat16" else sd), shape
    if method != "affine":
        require(False, f"unknown method {method!r}")
    bits = qinfo.get("bits")
    if not (_is_int(bits) and 1 <= bits <= 8):
        require(False, f"bad bits {bits!r}")
    require(qinfo.get("stored_dtype") == "uint8", "affine codes must be stored as uint8")
    channels = _granularity(qinfo, shape, "array")
    for key in ("scale", "offset"):
        v = qinfo.get(key)
        ok = isinstance(v, list) and len(v) == channels
        if not (ok and all(_is_number(f) for f in v)):
            require(False, f"'{key}' must be {channels} numbers")
    return "uint8", shape


def require(ok: bool, message: str) -> None:
    """Raise :class:`FormatError` about the quantisation info unless ``ok``."""
    if not ok:
        raise FormatError(f"invalid quantization info: {message}")


def _is_key(v: Any, table: dict) -> bool:
    return isinstance(v, str) and v in table


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    ok = isinstance(shape, list) and len(shape) <= _MAX_NDIM
    if not (ok and all(_is_int(d) and d >= 0 for d in shape)):
        require(False, f"{name!r}: bad shape {shape!r}")
    return tuple(shape)


def _granularity(e: dict, shape: tuple[int, ...], name: str) -> int:
    """Validate granularity/axis of an affine entry; return its number of channels."""
    g = e.get("granularity")
    if g == "tensor":
        require("axis" not in e, f"{name!r}: per-tensor entry with an axis")
        return 1
    require(g == "channel", f"{name!r}: bad granularity {g!r}")
    axis = e.get("axis")
    require(_is_int(axis) and 0 <= axis < len(shape), f"{name!r}: bad axis {axis!r}")
    require(shape[axis] >= 1, f"{name!r}: per-channel over an empty axis")
    return shape[axis]
