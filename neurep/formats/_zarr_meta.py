"""The subset of zarr v3 a ``.nrep`` uses, validated without trusting the file.

Arrays: a regular chunk grid, the ``default`` chunk-key encoding with ``/``, and the codec
``bytes`` (little-endian), optionally followed by ``zstd``. A raw chunk is exactly
``prod(chunk_shape) * itemsize`` bytes; a zstd chunk must declare that content size in its
frame header and is decoded into a buffer of exactly that size, so a chunk's decoded size is
known from the metadata alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Final

import numpy as np

from neurep.errors import FormatError, ResourceLimitError
from neurep.formats._limits import ReadLimits

ROOT_METADATA: Final = "zarr.json"
ARRAY_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
ARRAY_DTYPES: Final = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    }
)
_ARRAY_KEYS: Final = frozenset(
    {
        "zarr_format",
        "node_type",
        "shape",
        "data_type",
        "chunk_grid",
        "chunk_key_encoding",
        "fill_value",
        "codecs",
        "attributes",
        "storage_transformers",
        "dimension_names",
    }
)
_GROUP_KEYS: Final = frozenset({"zarr_format", "node_type", "attributes", "consolidated_metadata"})
_FLOAT_FILL_WORDS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CHUNK_INDEX: Final = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """A validated zarr v3 array: ``shape``, numpy ``dtype`` (little-endian), ``chunks``."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    fill_value: Any
    zstd: bool = False

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(-(-size // chunk) for size, chunk in zip(self.shape, self.chunks, strict=True))

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one stored chunk (edge chunks are stored full size, as zarr does)."""
        return math.prod(self.chunks) * self.dtype.itemsize

    def chunk_member(self, index: tuple[int, ...]) -> str:
        """ZIP member name of the chunk at grid position ``index``."""
        return "/".join((self.name, "c", *(str(i) for i in index)))


def parse_group_metadata(doc: Any, *, source: str) -> Any:
    """Validate the root ``zarr.json`` (a zarr v3 group); return its ``neurep`` attribute."""
    if not isinstance(doc, dict):
        raise FormatError(f"{source}: root zarr.json is not a JSON object")
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise FormatError(
            f"{source}: root zarr.json is not a zarr v3 group (zarr_format "
            f"{doc.get('zarr_format')!r}, node_type {doc.get('node_type')!r})"
        )
    unknown = sorted(set(doc) - _GROUP_KEYS)
    if unknown:
        raise FormatError(f"{source}: root zarr.json has unknown keys {unknown[:10]}")
    if doc.get("consolidated_metadata") is not None:
        raise FormatError(f"{source}: consolidated zarr metadata is not used in .nrep files")
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict) or "neurep" not in attributes:
        raise FormatError(
            f"{source}: root zarr.json has no 'neurep' attribute, so this is a zarr ZIP store "
            "but not a .nrep file"
        )
    return attributes["neurep"]


def parse_array_metadata(doc: Any, *, name: str, source: str, limits: ReadLimits) -> ArraySpec:
    """Validate the ``zarr.json`` of array ``name`` and return its :class:`ArraySpec`."""
    where = f"{source}: array {name!r}"
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: zarr.json is not a JSON object")
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        raise FormatError(f"{where}: zarr.json is not a zarr v3 array")
    unknown = sorted(set(doc) - _ARRAY_KEYS)
    if unknown:
        raise FormatError(f"{where}: zarr.json has unknown keys {unknown[:10]}")
    shape = _int_list(doc.get("shape"), minimum=0, where=f"{where}: shape", limits=limits)
    data_type = doc.get("data_type")
    if not isinstance(data_type, str) or data_type not in ARRAY_DTYPES:
        raise FormatError(
            f"{where}: data_type {str(data_type)[:40]!r} is not one of {sorted(ARRAY_DTYPES)}"
        )
    dtype = np.dtype(data_type).newbyteorder("<")
    grid = doc.get("chunk_grid")
    if not (
        isinstance(grid, dict)
        and grid.get("name") == "regular"
        and set(grid) <= {"name", "configuration"}
        and isinstance(grid.get("configuration"), dict)
        and set(grid["configuration"]) == {"chunk_shape"}
    ):
        raise FormatError(f"{where}: chunk_grid must be 'regular' with a chunk_shape")
    chunks = _int_list(
        grid["configuration"]["chunk_shape"],
        minimum=1,
        where=f"{where}: chunk_shape",
        limits=limits,
    )
    if len(chunks) != len(shape):
        raise FormatError(f"{where}: chunk_shape has {len(chunks)} axes, shape {len(shape)}")
    _check_chunk_key_encoding(doc.get("chunk_key_encoding"), where)
    zstd = _check_codecs(doc.get("codecs"), where)
    if doc.get("storage_transformers", []) != []:
        raise FormatError(f"{where}: storage transformers are not used in .nrep files")
    names = doc.get("dimension_names")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == len(shape)
        and all(item is None or isinstance(item, str) for item in names)
    ):
        raise FormatError(f"{where}: dimension_names must list one name or null per axis")
    if not isinstance(doc.get("attributes", {}), dict):
        raise FormatError(f"{where}: attributes must be a JSON object")
    elements = math.prod(shape)
    if elements > limits.max_elements:
        raise ResourceLimitError(
            f"{where}: shape {shape} has {elements} elements, more than "
            f"ReadLimits.max_elements={limits.max_elements}"
        )
    spec = ArraySpec(name, tuple(shape), dtype, tuple(chunks), _fill_value(doc, dtype, where), zstd)
    if spec.chunk_nbytes > limits.max_decoded_bytes:
        raise ResourceLimitError(
            f"{where}: one chunk is {spec.chunk_nbytes} bytes, more than "
            f"ReadLimits.max_decoded_bytes={limits.max_decoded_bytes}"
        )
    return spec


def parse_chunk_index(spec: ArraySpec, key: str, *, source: str) -> tuple[int, ...]:
    """Grid position encoded by the member-name suffix ``key`` (``"c/0/3"``), range-checked."""
    parts = key.split("/")
    if parts[0] != "c" or len(parts) - 1 != len(spec.shape):
        raise FormatError(f"{source}: unexpected member {spec.name + '/' + key!r}")
    if not all(_CHUNK_INDEX.fullmatch(part) for part in parts[1:]):
        raise FormatError(f"{source}: bad chunk key {spec.name + '/' + key!r}")
    index = tuple(int(part) for part in parts[1:])
    if any(i >= n for i, n in zip(index, spec.grid, strict=True)):
        raise FormatError(
            f"{source}: chunk {spec.name + '/' + key!r} lies outside the array's chunk grid "
            f"{spec.grid}"
        )
    return index


def _int_list(value: Any, *, minimum: int, where: str, limits: ReadLimits) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item >= minimum for item in value
    ):
        raise FormatError(f"{where} must be a list of integers >= {minimum}")
    if len(value) > limits.max_ndim:
        raise ResourceLimitError(
            f"{where} has {len(value)} axes, more than ReadLimits.max_ndim={limits.max_ndim}"
        )
    if any(item > limits.max_elements for item in value):
        raise ResourceLimitError(
            f"{where} {value} exceeds ReadLimits.max_elements={limits.max_elements} on one axis"
        )
    return value


def _check_chunk_key_encoding(encoding: Any, where: str) -> None:
    if encoding in (
        {"name": "default", "configuration": {"separator": "/"}},
        {"name": "default"},
    ):
        return
    raise FormatError(f"{where}: chunk_key_encoding must be 'default' with separator '/'")


_BYTES_CODECS: Final = (
    {"name": "bytes", "configuration": {"endian": "little"}},
    {"name": "bytes"},
    {"name": "bytes", "configuration": {}},
)


def _check_codecs(codecs: Any, where: str) -> bool:
    """True for ``[bytes, zstd]``, False for ``[bytes]``; FormatError for anything else."""
    if isinstance(codecs, list) and codecs and codecs[0] in _BYTES_CODECS:
        if len(codecs) == 1:
            return False
        if len(codecs) == 2 and _is_zstd_codec(codecs[1]):
            return True
    raise FormatError(
        f"{where}: codecs must be [bytes (little-endian)] or [bytes, zstd]; other codecs and "
        "filters are not used in .nrep files"
    )


def _is_zstd_codec(codec: Any) -> bool:
    if (
        not isinstance(codec, dict)
        or codec.get("name") != "zstd"
        or set(codec) != {"name", "configuration"}
    ):
        return False
    configuration = codec["configuration"]
    return (
        isinstance(configuration, dict)
        and set(configuration) <= {"level", "checksum"}
        and isinstance(configuration.get("level", 0), int)
        and isinstance(configuration.get("checksum", False), bool)
    )


def _fill_value(doc: dict[str, Any], dtype: np.dtype, where: str) -> Any:
    value = doc.get("fill_value")
    if dtype.kind == "b":
        if isinstance(value, bool):
            return value
    elif dtype.kind == "f":
        if isinstance(value, str) and value in _FLOAT_FILL_WORDS:
            return _FLOAT_FILL_WORDS[value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            with np.errstate(over="ignore"):  # 1e300 in float16 is inf, as zarr reads it
                return np.array(float(value)).astype(dtype)[()]
    elif isinstance(value, int) and not isinstance(value, bool):
        info = np.iinfo(dtype)
        if info.min <= value <= info.max:
            return value
    raise FormatError(f"{where}: fill_value {str(value)[:40]!r} does not fit data_type {dtype}")
