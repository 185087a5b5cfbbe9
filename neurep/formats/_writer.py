"""Writing a ``.nrep`` file (:func:`write_nrep`) and, with the same members, a collection's
files (:func:`write_container`)."""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numcodecs
import numpy as np
import safetensors
import safetensors.torch
import torch
import zarr
import zarr.codecs
import zarr.storage

from neurep._version import __version__
from neurep.errors import FormatError
from neurep.formats._atomic import atomic_write
from neurep.formats._json import check_json_bounds
from neurep.formats._limits import DEFAULT_LIMITS
from neurep.formats._metadata import FORMAT_NAME, FORMAT_VERSION, validate_metadata
from neurep.formats._weights import TORCH_DTYPES, WEIGHTS_MEMBER, sha256_hex
from neurep.formats._zarr_meta import ARRAY_DTYPES, ARRAY_NAME_PATTERN, ROOT_METADATA

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: same inputs, same bytes
_UNIX = 3
# zstd is kept for an array only when it saves at least 2 % (quantised codes typically save
# a third; float embeddings rarely pay for the decode). Level 3: higher levels measured no
# smaller on 6-bit codes and are several times slower.
_ZSTD_MIN_SAVING = 0.98
_ZSTD_LEVEL = 3


def write_nrep(
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    tensors: Mapping[str, torch.Tensor],
    array_chunks: Mapping[str, tuple[int, ...]] | None = None,
) -> int:
    """Write a ``.nrep`` file atomically; return its size in bytes.

    Args:
        path: target file; replaced atomically if it exists (a symlink there is replaced,
            not followed).
        metadata: the neurep metadata without the keys the writer fills in (``format``,
            ``format_version``, ``created``, ``library``, ``weights/member``,
            ``weights/sha256``, ``weights/nbytes``); see docs/FORMAT.md.
        arrays: ``{name: array}`` stored as zarr v3 arrays (e.g. ``"embedding"``, shape
            ``(B, E, *s)``), chunked along axis 0 in whole items, about 4 kB a chunk
            (:func:`_default_chunks`), unless ``array_chunks[name]`` gives a chunk shape.
        tensors: ``{name: tensor}`` stored in ``weights.safetensors`` (CPU copies).

    Raises:
        FormatError: the metadata does not satisfy the schema, or arrays/tensors cannot be
            stored (dtype, name, chunking).
        TypeError: arguments of the wrong type.
    """
    from neurep.formats._reader import open_nrep

    return write_container(
        path,
        complete=_complete_metadata,
        metadata=metadata,
        arrays=arrays,
        tensors=tensors,
        array_chunks=array_chunks,
        open_back=open_nrep,
    )


def write_container(
    path: str | os.PathLike,
    *,
    complete: Callable[[Mapping[str, Any], bytes, dict, str], dict[str, Any]],
    metadata: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    tensors: Mapping[str, torch.Tensor] | None,
    array_chunks: Mapping[str, tuple[int, ...]] | None = None,
    open_back: Callable[[str], Any],
) -> int:
    """Write a ZIP of a zarr v3 group (``metadata`` as its ``neurep`` attribute), its arrays
    and, unless ``tensors`` is None, ``weights.safetensors``; atomically, after reading the
    temporary file back with ``open_back`` (which must raise FormatError for a bad file).

    ``.nrep`` files and the files of a collection (:mod:`neurep.collection`) are written
    here. ``complete(metadata, weights_bytes, arrays, target)`` returns the full, validated
    metadata (the writer's keys filled in). Returns the file's size in bytes.
    """
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    stored_arrays = _checked_arrays(arrays, array_chunks or {}, target)
    weights = None if tensors is None else _safetensors_bytes(tensors, target)
    full_metadata = complete(metadata, weights or b"", stored_arrays, target)
    members = _zarr_members(full_metadata, stored_arrays)
    if weights is not None:
        members.append((WEIGHTS_MEMBER, weights))

    def write(file: BinaryIO) -> None:
        _write_zip(file, members)

    def check(temporary: str) -> None:
        try:
            open_back(temporary).close()
        except FormatError as error:
            raise FormatError(
                f"{target}: refusing to write a file neurep cannot read back: {error}"
            ) from error

    return atomic_write(target, write, check)


def plain_json(metadata: Mapping[str, Any], target: str) -> dict[str, Any]:
    """``metadata`` as plain JSON values (numpy scalars and small arrays converted);
    FormatError for NaN, infinities and what JSON cannot hold."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), default=_json_default, allow_nan=False))
    except ValueError as error:
        raise FormatError(
            f"{target}: metadata is not JSON-compatible ({error}); use null instead of NaN or "
            "infinity (e.g. the PSNR of a lossless fit)"
        ) from error
    except TypeError as error:
        raise FormatError(f"{target}: metadata is not JSON-compatible: {error}") from error


def writer_keys(existing_library: Any) -> dict[str, Any]:
    """What every written file records: ``created`` and ``library`` (the caller's library
    entries kept, the versions of this run added)."""
    library = existing_library if isinstance(existing_library, dict) else {}
    return {"created": _created_timestamp(), "library": {**library, **_library_versions()}}


def _checked_arrays(
    arrays: Mapping[str, np.ndarray], chunks: Mapping[str, tuple[int, ...]], target: str
) -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
    """``{name: (array, chunk shape)}`` after checking names, dtypes and chunk shapes."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a dict of numpy arrays, got {type(arrays).__name__}")
    unknown = sorted(set(chunks) - set(arrays))
    if unknown:
        raise FormatError(f"{target}: array_chunks names arrays that are not given: {unknown}")
    result = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not ARRAY_NAME_PATTERN.fullmatch(name):
            raise FormatError(
                f"{target}: array name {name!r} must match {ARRAY_NAME_PATTERN.pattern}"
            )
        if not isinstance(value, np.ndarray):
            raise TypeError(f"arrays[{name!r}] must be a numpy array, got {type(value).__name__}")
        if value.dtype.name not in ARRAY_DTYPES:
            raise FormatError(
                f"{target}: arrays[{name!r}] has dtype {value.dtype}, not one of "
                f"{sorted(ARRAY_DTYPES)}"
            )
        chunk_shape = tuple(chunks.get(name, _default_chunks(value.shape, value.dtype.itemsize)))
        if len(chunk_shape) != value.ndim or not all(
            isinstance(size, int | np.integer) and size >= 1 for size in chunk_shape
        ):
            raise FormatError(
                f"{target}: chunk shape {chunk_shape} for array {name!r} of shape "
                f"{value.shape} must have one positive int per axis"
            )
        result[name] = (value, tuple(int(size) for size in chunk_shape))
    return result


#: Bytes of items a default chunk gathers: each chunk costs ~120 bytes of ZIP entries, which
#: one small frame embedding (a few dozen bytes at low rates) would not carry.
CHUNK_TARGET_BYTES = 4096


def _default_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Whole items along axis 0, as many as fit in :data:`CHUNK_TARGET_BYTES` (at least one),
    so that a video's frames stay readable a few chunks at a time."""
    row_bytes = itemsize * math.prod(max(size, 1) for size in shape[1:])
    rows = max(1, min(max(shape[0], 1), CHUNK_TARGET_BYTES // max(row_bytes, 1))) if shape else 1
    return tuple(rows if axis == 0 else max(size, 1) for axis, size in enumerate(shape))


def _safetensors_bytes(tensors: Mapping[str, torch.Tensor], target: str) -> bytes:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of torch tensors, got {type(tensors).__name__}")
    prepared = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise FormatError(f"{target}: tensor name {name!r} is not allowed")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"tensors[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}"
            )
        if tensor.dtype not in TORCH_DTYPES:
            raise FormatError(
                f"{target}: tensors[{name!r}] has dtype {tensor.dtype}, not one of "
                f"{sorted(str(dtype) for dtype in TORCH_DTYPES)}"
            )
        if tensor.layout != torch.strided:
            raise FormatError(f"{target}: tensors[{name!r}] is sparse; make it dense first")
        prepared[name] = tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return safetensors.torch.save(prepared)


def _complete_metadata(
    metadata: Mapping[str, Any],
    weights: bytes,
    arrays: dict[str, tuple[np.ndarray, tuple[int, ...]]],
    target: str,
) -> dict[str, Any]:
    """The caller's metadata plus the writer's keys, as plain JSON values, validated."""
    plain = plain_json(metadata, target)
    plain.update(
        format=FORMAT_NAME, format_version=FORMAT_VERSION, **writer_keys(plain.get("library"))
    )
    weights_entry = plain.get("weights") if isinstance(plain.get("weights"), dict) else {}
    plain["weights"] = {
        **weights_entry,
        "member": WEIGHTS_MEMBER,
        "sha256": sha256_hex(weights),
        "nbytes": len(weights),
    }
    check_json_bounds(plain, source=target, what="metadata", limits=DEFAULT_LIMITS)
    validate_metadata(plain, source=target)
    embedding = plain["embedding"]
    if embedding["array"] not in arrays:
        raise FormatError(
            f"{target}: metadata embedding/array is {embedding['array']!r} but arrays has "
            f"{sorted(arrays)}"
        )
    array = arrays[embedding["array"]][0]
    if list(array.shape) != embedding["shape"] or array.dtype.name != embedding["dtype"]:
        raise FormatError(
            f"{target}: metadata embedding says {embedding['shape']} {embedding['dtype']} but "
            f"arrays[{embedding['array']!r}] is {list(array.shape)} {array.dtype.name}"
        )
    return plain


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 100_000:
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _created_timestamp() -> str:
    """ISO-8601 UTC creation time; ``SOURCE_DATE_EPOCH`` pins it for reproducible files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch and epoch.isdigit() else time.time()
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _library_versions() -> dict[str, str]:
    """What a decode depends on (format 1.1 dropped numpy, zarr and safetensors: ~70 bytes)."""
    return {"neurep": __version__, "torch": torch.__version__}


def _zarr_members(
    metadata: dict[str, Any], arrays: dict[str, tuple[np.ndarray, tuple[int, ...]]]
) -> list[tuple[str, bytes]]:
    """Encode the zarr v3 hierarchy with zarr itself; return ``(member, bytes)`` in file order.

    Order: root ``zarr.json``, then per array (sorted by name) its ``zarr.json`` and its
    chunks in row-major grid order.
    """
    store_dict: dict[str, Any] = {}
    # Compact JSON: zarr's default indent of 2 costs ~5 kB a file, 0.1 bpp on a Kodak image.
    with zarr.config.set({"json_indent": None}):
        zarr.create_group(
            store=zarr.storage.MemoryStore(store_dict=store_dict),
            attributes={"neurep": metadata},
            zarr_format=3,
        )
        members = [(ROOT_METADATA, _compact_json(store_dict[ROOT_METADATA].to_bytes()))]
        for name, (array, chunk_shape) in sorted(arrays.items()):
            raw = _encode_array(array, chunk_shape, compressed=False)
            packed = _encode_array(array, chunk_shape, compressed=True)
            smaller = packed if _total(packed) < _ZSTD_MIN_SAVING * _total(raw) else raw
            members.extend((f"{name}/{key}", data) for key, data in smaller)
    return members


def _encode_array(
    array: np.ndarray, chunk_shape: tuple[int, ...], *, compressed: bool
) -> list[tuple[str, bytes]]:
    """The zarr v3 members of ``array`` stored at the root of a store, in file order.

    zarr writes the array metadata (``zarr.json``); the chunks are encoded here, as the
    codec chain in that metadata defines them (full-size little-endian C-order blocks, edge
    chunks padded with the fill value, then zstd if compressed): zarr's per-chunk pipeline
    costs ~0.3 ms a chunk, i.e. minutes for a long video's frames.
    """
    store_dict: dict[str, Any] = {}
    fill_value = False if array.dtype.kind == "b" else 0
    zarr.create_array(
        store=zarr.storage.MemoryStore(store_dict=store_dict),
        shape=array.shape,
        chunks=chunk_shape,
        dtype=array.dtype,
        compressors=zarr.codecs.ZstdCodec(level=_ZSTD_LEVEL) if compressed else None,
        filters=None,
        fill_value=fill_value,
        zarr_format=3,
    )
    members = [(ROOT_METADATA, _compact_json(store_dict.pop(ROOT_METADATA).to_bytes()))]
    if store_dict:  # pragma: no cover - zarr only writes metadata until data is assigned
        raise RuntimeError(f"unexpected zarr members {sorted(store_dict)}")
    little_endian = array.dtype.newbyteorder("<")
    compressor = numcodecs.Zstd(level=_ZSTD_LEVEL) if compressed else None
    grid = [range(-(-size // chunk)) for size, chunk in zip(array.shape, chunk_shape, strict=True)]
    for index in itertools.product(*grid):
        region = tuple(
            slice(i * chunk, (i + 1) * chunk) for i, chunk in zip(index, chunk_shape, strict=True)
        )
        block = array[region]
        if block.shape != chunk_shape:
            padded = np.full(chunk_shape, fill_value, dtype=array.dtype)
            padded[tuple(slice(0, size) for size in block.shape)] = block
            block = padded
        data = np.ascontiguousarray(block, dtype=little_endian).tobytes()
        if compressor is not None:
            data = bytes(compressor.encode(data))
        members.append(("/".join(("c", *(str(i) for i in index))), data))
    return members


def _compact_json(data: bytes) -> bytes:
    """zarr's JSON without spaces and without keys that only restate zarr v3 defaults
    (empty ``attributes`` / ``storage_transformers``, the default key separator)."""
    doc = json.loads(data)
    if doc.get("node_type") == "array":
        for key, empty in (("attributes", {}), ("storage_transformers", [])):
            if doc.get(key) == empty:
                del doc[key]
        default_keys = {"name": "default", "configuration": {"separator": "/"}}
        if doc.get("chunk_key_encoding") == default_keys:
            doc["chunk_key_encoding"] = {"name": "default"}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _total(members: list[tuple[str, bytes]]) -> int:
    return sum(len(data) for _, data in members)


def _write_zip(file: BinaryIO, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            # JSON metadata deflates to about half (format 1.1); payload stays STORED
            json_member = name == ROOT_METADATA or name.endswith("/" + ROOT_METADATA)
            info.compress_type = zipfile.ZIP_DEFLATED if json_member else zipfile.ZIP_STORED
            info.create_system = _UNIX
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data, compresslevel=9 if json_member else None)
