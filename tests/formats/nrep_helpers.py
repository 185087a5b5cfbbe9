"""Shared helpers for the .nrep container tests: a small valid file and ways to tamper with it."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import struct
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from neurep.errors import FormatError
from neurep.formats import open_nrep


def make_metadata(embedding: np.ndarray, **overrides: Any) -> dict[str, Any]:
    """Caller-side metadata for an embedding array named "embedding"."""
    metadata = {
        "modality": {"name": "array", "configuration": {"shape": [8, 8], "dtype": "float32"}},
        "signal": {"shape": [embedding.shape[0] if embedding.ndim else 1, 1, 8, 8], "loss": "mse"},
        "decoder": {"name": "tiny", "configuration": {"channels": [4, 2], "act": "silu"}},
        "encoder": None,
        "embedding": {
            "array": "embedding",
            "shape": list(embedding.shape),
            "dtype": embedding.dtype.name,
            "precision": "float32",
            "quantization": None,
        },
        "weights": {"precision": "float32", "quantization": None},
        "fit": {"preset": "test", "steps": 3, "seed": 0},
        "quality": {"psnr": 31.5, "ms_ssim": None},
    }
    metadata.update(overrides)
    return metadata


def small_inputs() -> tuple[dict, dict, dict]:
    """(metadata, arrays, tensors) of a small but complete neural datum."""
    embedding = np.arange(3 * 2 * 2 * 2, dtype=np.float16).reshape(3, 2, 2, 2)
    tensors = {
        "head.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "head.bias": torch.tensor([1.5, -2.0], dtype=torch.float16),
        "codes": torch.tensor([1, 2, 255], dtype=torch.uint8),
    }
    return make_metadata(embedding), {"embedding": embedding}, tensors


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of every member, in file order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def build_zip(members: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    """A ZIP of ``members`` as given (duplicates and odd names included)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for name, payload in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                archive.writestr(info, payload)
    return buffer.getvalue()


def tamper(
    data: bytes,
    *,
    metadata: Callable[[dict], Any] | None = None,
    weights: bytes | None = None,
    members: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]] | None = None,
    fix_checksum: bool = True,
) -> bytes:
    """Rebuild ``data`` with the neurep metadata, the weights or the member list changed.

    ``metadata(meta)`` edits the metadata dict in place; with ``fix_checksum`` the weights
    sha256/nbytes are updated to new ``weights`` so deeper checks are reached.
    """
    items = members_of(data)
    root = json.loads(dict(items)["zarr.json"])
    meta = root["attributes"]["neurep"]
    if weights is not None:
        items = [(n, weights if n == "weights.safetensors" else p) for n, p in items]
        if fix_checksum:
            meta["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
            meta["weights"]["nbytes"] = len(weights)
    if metadata is not None:
        metadata(meta)
    encoded = json.dumps(root).encode()
    items = [(n, encoded if n == "zarr.json" else p) for n, p in items]
    if members is not None:
        items = members(copy.deepcopy(items))
    return build_zip(items)


def exercise(data: bytes | str, **open_kwargs: Any) -> None:
    """Open and read everything in the file (the full surface a hostile file can reach)."""
    with open_nrep(data, **open_kwargs) as reader:
        for name in reader.array_names:
            if reader.read_array(name).ndim:
                reader.read_array(name, slice(None, None, -1))
        reader.read_tensors()


def assert_rejected(data: bytes, match: str | None = None, error: type = FormatError) -> None:
    """``data`` must fail with ``error`` (default FormatError) naming the problem."""
    with pytest.raises(error, match=match) as info:
        exercise(data)
    assert str(info.value).startswith("<bytes>: "), "the message must name the file"


def works_or_format_error(data: bytes) -> bool:
    """True if ``data`` opens and reads fully, False if it raises FormatError; else re-raise."""
    try:
        exercise(data)
    except FormatError as error:
        assert str(error).startswith("<bytes>")
        return False
    return True


def zip_layout(data: bytes) -> tuple[int, int, int]:
    """(central directory offset, its size, end record offset) of a plain (non-ZIP64) ZIP."""
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    return cd_offset, cd_size, eocd


def central_entry(
    name: str, *, crc: int, size: int, offset: int, method: int = 0, compressed: int | None = None
) -> bytes:
    """A hand-made central directory entry (for archives zipfile refuses to write)."""
    encoded = name.encode()
    return (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            size if compressed is None else compressed,
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + encoded
    )


def with_central_entries(data: bytes, extra: list[bytes]) -> bytes:
    """``data`` with ``extra`` central directory entries appended (end record updated)."""
    cd_offset, cd_size, eocd = zip_layout(data)
    count = struct.unpack_from("<H", data, eocd + 10)[0] + len(extra)
    directory = data[cd_offset : cd_offset + cd_size] + b"".join(extra)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), cd_offset, 0)
    return data[:cd_offset] + directory + end


def local_header(name: str, *, crc: int, size: int) -> bytes:
    encoded = name.encode()
    return (
        struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, size, size, len(encoded), 0
        )
        + encoded
    )


def patch_central(data: bytes, member: str, **fields: int) -> bytes:
    """Overwrite fields (crc, compressed, size, offset, method) of ``member``'s central entry."""
    layout = {
        "method": (10, "<H"),
        "crc": (16, "<I"),
        "compressed": (20, "<I"),
        "size": (24, "<I"),
        "offset": (42, "<I"),
    }
    buffer = bytearray(data)
    cd_offset, _, _ = zip_layout(data)
    position = cd_offset
    while True:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", buffer, position + 28)
        name = bytes(buffer[position + 46 : position + 46 + name_len]).decode()
        if name == member:
            for field, value in fields.items():
                offset, fmt = layout[field]
                struct.pack_into(fmt, buffer, position + offset, value)
            return bytes(buffer)
        position += 46 + name_len + extra_len + comment_len
