"""Validation and loading of the ``weights.safetensors`` member.

The safetensors header is checked here before the ``safetensors`` library sees the bytes:
dtype whitelist, shapes within the limits, and data offsets that tile the data section exactly
(each tensor's byte range = elements x dtype size, contiguous, in bounds).
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

import safetensors.torch
import torch

from neurep.errors import FormatError, ResourceLimitError
from neurep.formats._json import load_json
from neurep.formats._limits import ReadLimits
from neurep.formats._memo import PassedChecks

WEIGHTS_MEMBER: Final = "weights.safetensors"

# safetensors dtype code -> (bytes per element, torch dtype)
SAFETENSORS_DTYPES: Final[dict[str, tuple[int, torch.dtype]]] = {
    "F64": (8, torch.float64),
    "F32": (4, torch.float32),
    "F16": (2, torch.float16),
    "BF16": (2, torch.bfloat16),
    "I64": (8, torch.int64),
    "I32": (4, torch.int32),
    "I16": (2, torch.int16),
    "I8": (1, torch.int8),
    "U8": (1, torch.uint8),
    "BOOL": (1, torch.bool),
}
TORCH_DTYPES: Final = frozenset(dtype for _, dtype in SAFETENSORS_DTYPES.values())
_HEADER_LENGTH_BYTES: Final = 8
_TENSOR_KEYS: Final = frozenset({"dtype", "shape", "data_offsets"})


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def validate_safetensors(data: bytes, *, source: str, limits: ReadLimits) -> dict[str, tuple]:
    """Check the safetensors header of ``data``; return ``{name: (dtype code, shape)}``."""
    where = f"{source}: member {WEIGHTS_MEMBER!r}"
    if len(data) < _HEADER_LENGTH_BYTES:
        raise FormatError(f"{where}: too short for a safetensors header")
    header_length = int.from_bytes(data[:_HEADER_LENGTH_BYTES], "little")
    if header_length > len(data) - _HEADER_LENGTH_BYTES:
        raise FormatError(
            f"{where}: safetensors header declares {header_length} bytes, more than the member"
        )
    header_end = _HEADER_LENGTH_BYTES + header_length
    key = (bytes(data[_HEADER_LENGTH_BYTES:header_end]), len(data) - header_end, limits)
    described = _PASSED_HEADERS.get(
        key, lambda: _check_header(data, header_end, where, source, limits)
    )
    return dict(described)


#: Safetensors headers that passed, by (header bytes, data length, limits): one architecture
#: at one precision writes the same header in every file.
_PASSED_HEADERS: PassedChecks[dict[str, tuple]] = PassedChecks()


def _check_header(
    data: bytes, header_end: int, where: str, source: str, limits: ReadLimits
) -> dict[str, tuple]:
    header = load_json(
        data[_HEADER_LENGTH_BYTES:header_end],
        source=source,
        what=f"the safetensors header of {WEIGHTS_MEMBER!r}",
        limits=limits,
        max_nodes=16 * limits.max_tensors + 64,
    )
    if not isinstance(header, dict):
        raise FormatError(f"{where}: safetensors header is not a JSON object")
    extra = header.get("__metadata__", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise FormatError(f"{where}: safetensors __metadata__ must map strings to strings")
    entries = {name: spec for name, spec in header.items() if name != "__metadata__"}
    if len(entries) > limits.max_tensors:
        raise ResourceLimitError(
            f"{where}: {len(entries)} tensors, more than ReadLimits.max_tensors="
            f"{limits.max_tensors}"
        )
    ranges: list[tuple[int, int, str]] = []
    described: dict[str, tuple] = {}
    for name, spec in entries.items():
        dtype_code, shape, begin, end = _tensor_entry(name, spec, where, limits)
        described[name] = (dtype_code, shape)
        ranges.append((begin, end, name))
    data_length = len(data) - header_end
    cursor = 0
    for begin, end, name in sorted(ranges):
        if begin != cursor:
            raise FormatError(
                f"{where}: tensor {name!r} starts at byte {begin} of the data section, expected "
                f"{cursor} (tensors must be contiguous and must not overlap)"
            )
        cursor = end
    if cursor != data_length:
        raise FormatError(
            f"{where}: tensors cover {cursor} bytes but the data section has {data_length}"
        )
    return described


def _tensor_entry(
    name: str, spec: object, where: str, limits: ReadLimits
) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(spec, dict) or set(spec) != _TENSOR_KEYS:
        raise FormatError(
            f"{where}: tensor {name[:100]!r} must have exactly {sorted(_TENSOR_KEYS)}"
        )
    dtype_code, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype_code, str) or dtype_code not in SAFETENSORS_DTYPES:
        raise FormatError(
            f"{where}: tensor {name[:100]!r} has dtype {str(dtype_code)[:20]!r}, not one of "
            f"{sorted(SAFETENSORS_DTYPES)}"
        )
    if not _is_int_list(shape) or not _is_int_list(offsets) or len(offsets) != 2:
        raise FormatError(f"{where}: tensor {name[:100]!r} has a malformed shape or data_offsets")
    if len(shape) > limits.max_ndim:
        raise ResourceLimitError(f"{where}: tensor {name[:100]!r} has {len(shape)} axes")
    elements = math.prod(shape)
    if elements > limits.max_elements:
        raise ResourceLimitError(
            f"{where}: tensor {name[:100]!r} has {elements} elements, more than "
            f"ReadLimits.max_elements={limits.max_elements}"
        )
    begin, end = offsets
    if end - begin != elements * SAFETENSORS_DTYPES[dtype_code][0]:
        raise FormatError(
            f"{where}: tensor {name[:100]!r}: shape {shape} x {dtype_code} needs "
            f"{elements * SAFETENSORS_DTYPES[dtype_code][0]} bytes, data_offsets give "
            f"{end - begin}"
        )
    return dtype_code, tuple(shape), begin, end


def _is_int_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def load_tensors(data: bytes, *, source: str) -> dict[str, torch.Tensor]:
    """Decode validated safetensors bytes (no pickle) into CPU tensors."""
    try:
        return safetensors.torch.load(data)
    except Exception as error:  # the header was validated; anything left is a damaged file
        raise FormatError(
            f"{source}: member {WEIGHTS_MEMBER!r} could not be decoded: {error}"
        ) from error
