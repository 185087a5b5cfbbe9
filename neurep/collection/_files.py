"""A collection's files on disk: the manifest, the model file and the embedding shards.

::

    COLLECTION/
      collection.json        manifest: the model file and the shards, in item order, with
                             their sizes and SHA-256 (JSON)
      model.nrepm            the shared model: a ZIP of a zarr v3 group (metadata) and
                             weights.safetensors (decoder int8, encoder float16)
      shards/000000.nreps    embeddings of consecutive items: a ZIP of a zarr v3 group
      shards/000001.nreps    (metadata: the model's SHA-256, names, quality) and one array
      ...                    ``embeddings`` (n, E, *s) uint8, chunked by items

The model and shard files are read by the ``.nrep`` reader's classes (strict ZIP, bounded
JSON, checked zarr arrays and safetensors), with their own metadata schemas. The
specification is docs/FORMAT.md, "Collections".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurep.collection._schema import (
    FORMAT_VERSION,
    MANIFEST_FORMAT,
    MODEL_FORMAT,
    SHARD_FORMAT,
    validate,
)
from neurep.errors import FormatError, ResourceLimitError, UnsupportedVersionError
from neurep.formats._atomic import atomic_write
from neurep.formats._json import check_json_bounds, load_json
from neurep.formats._limits import DEFAULT_LIMITS, ReadLimits
from neurep.formats._reader import NrepReader
from neurep.formats._source import ByteSource
from neurep.formats._weights import WEIGHTS_MEMBER, sha256_hex
from neurep.formats._writer import plain_json, write_container, writer_keys
from neurep.formats._zarr_meta import ROOT_METADATA, parse_group_metadata

MANIFEST = "collection.json"
MODEL_FILE = "model.nrepm"
SHARDS = "shards"
EMBEDDINGS = "embeddings"
#: Items per chunk of a shard's embeddings: a random read decodes one chunk, and each
#: chunk costs about 120 bytes of ZIP entries.
CHUNK_ITEMS = 64
#: The largest manifest read (bytes): about 150 bytes a shard.
MAX_MANIFEST_BYTES = 64 << 20


def is_collection(path: Any) -> bool:
    """Whether ``path`` is a folder holding a collection manifest."""
    try:
        return (Path(os.fspath(path)) / MANIFEST).is_file()
    except TypeError:
        return False


def file_sha256(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file, read a megabyte at a time."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


# -- the manifest --------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict[str, Any]:
    """The validated manifest of the collection in ``folder``."""
    path = folder / MANIFEST
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ResourceLimitError(f"{path}: {size} bytes, more than {MAX_MANIFEST_BYTES}")
    limits = ReadLimits(max_metadata_bytes=MAX_MANIFEST_BYTES, max_json_nodes=1 << 24)
    manifest = load_json(path.read_bytes(), source=str(path), what="manifest", limits=limits)
    _check_version(manifest, str(path))
    validate(manifest, "manifest", source=str(path))
    files = [manifest["model"]["file"], *(shard["file"] for shard in manifest["shards"])]
    if len(set(files)) != len(files) or MANIFEST in files:
        raise FormatError(f"{path}: the manifest names a file twice (or itself)")
    return manifest


def write_manifest(folder: Path, model: Mapping[str, Any], shards: list[dict]) -> None:
    """Write (or atomically replace) the manifest listing ``model`` and ``shards``."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        **writer_keys(None),
        "model": dict(model),
        "shards": list(shards),
    }
    validate(manifest, "manifest", source=str(folder / MANIFEST))
    data = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode()
    atomic_write(str(folder / MANIFEST), lambda file: file.write(data))


def _check_version(document: dict[str, Any], source: str) -> None:
    """Another major version is refused (before the schema, which may not describe it); a
    newer minor one reads as this one. Malformed versions are left to the schema."""
    version = document.get("format_version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,4}\.[0-9]{1,4}", version):
        return
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise UnsupportedVersionError(
            f"{source}: collection format {document['format_version']}, this neurep reads "
            f"{FORMAT_VERSION.split('.')[0]}.x; upgrade neurep"
        )


def file_entry(folder: Path, relative: str, **extra: Any) -> dict[str, Any]:
    """The manifest entry of a written file: its path in the folder, SHA-256 and size."""
    digest, size = file_sha256(folder / relative)
    return {"file": relative, "sha256": digest, "nbytes": size, **extra}


def read_listed(folder: Path, entry: Mapping[str, Any], what: str) -> bytes:
    """The bytes of a file the manifest lists, checked against its size and SHA-256."""
    path = folder / entry["file"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FormatError(
            f"{folder}: the manifest lists {what} {entry['file']!r}, missing"
        ) from None
    if size != entry["nbytes"]:
        raise FormatError(
            f"{path}: {size} bytes, the manifest says {entry['nbytes']} (changed or damaged)"
        )
    if size > DEFAULT_LIMITS.max_file_bytes:
        raise ResourceLimitError(f"{path}: {size} bytes, more than ReadLimits.max_file_bytes")
    data = path.read_bytes()
    if sha256_hex(data) != entry["sha256"]:
        raise FormatError(f"{path}: does not match the manifest's SHA-256 (changed or damaged)")
    return data


# -- model and shard files -------------------------------------------------------------------
class _CollectionFileReader(NrepReader):
    """The ``.nrep`` reader's ZIP, JSON and array checks, under another metadata schema."""

    KIND = ""
    FORMAT = ""

    def _read_metadata(self) -> dict[str, Any]:
        name = self._source.name
        if ROOT_METADATA not in self._index.members:
            raise FormatError(f"{name}: a ZIP file without a root zarr.json")
        root = self._member_json(ROOT_METADATA, "root zarr.json")
        metadata = parse_group_metadata(root, source=name)
        if not isinstance(metadata, dict) or metadata.get("format") != self.FORMAT:
            found = metadata.get("format") if isinstance(metadata, dict) else None
            raise FormatError(f"{name}: not a collection {self.KIND} file (format {found!r})")
        _check_version(metadata, name)
        validate(metadata, self.KIND, source=name)
        return metadata


class ModelReader(_CollectionFileReader):
    """A collection's ``model.nrepm``: its metadata and ``weights.safetensors``."""

    KIND = "model"
    FORMAT = MODEL_FORMAT

    def _check_cross_references(self) -> None:
        name = self._source.name
        member = self._index.members.get(WEIGHTS_MEMBER)
        if member is None or member.size != self.metadata["weights"]["nbytes"]:
            raise FormatError(f"{name}: the weights member is missing or not the size recorded")
        if self._arrays:
            raise FormatError(f"{name}: a model file holds no arrays ({sorted(self._arrays)})")


class ShardReader(_CollectionFileReader):
    """An embedding shard: metadata (model hash, names, quality) and ``embeddings``."""

    KIND = "shard"
    FORMAT = SHARD_FORMAT

    def _check_cross_references(self) -> None:
        name, metadata = self._source.name, self.metadata
        if WEIGHTS_MEMBER in self._index.members or set(self._arrays) != {EMBEDDINGS}:
            raise FormatError(f"{name}: a shard holds exactly one array, {EMBEDDINGS!r}")
        spec = self._arrays[EMBEDDINGS]
        count = metadata["items"]
        if spec.shape[0] != count or spec.dtype != np.uint8:
            raise FormatError(
                f"{name}: embeddings are {list(spec.shape)} {spec.dtype}, not {count} items of "
                "uint8"
            )
        columns = {"names": metadata["names"], **metadata["quality"]}
        columns.update(metadata.get("item_modality", {}))
        if "refine_steps" in metadata:
            columns["refine_steps"] = metadata["refine_steps"]
        for column, values in columns.items():
            if len(values) != count:
                raise FormatError(f"{name}: {column!r} has {len(values)} entries for {count} items")


def open_model(data: bytes, name: str) -> ModelReader:
    return ModelReader(ByteSource.open(data, name), DEFAULT_LIMITS)


def open_shard(data: bytes, name: str) -> ShardReader:
    return ShardReader(ByteSource.open(data, name), DEFAULT_LIMITS)


def _completer(kind: str, fmt: str):
    def complete(metadata: Mapping[str, Any], weights: bytes, arrays: dict, target: str):
        plain = plain_json(metadata, target)
        plain.update(format=fmt, format_version=FORMAT_VERSION, **writer_keys(plain.get("library")))
        if kind == "model":
            plain["weights"] = {
                **plain.get("weights", {}),
                "member": WEIGHTS_MEMBER,
                "sha256": sha256_hex(weights),
                "nbytes": len(weights),
            }
        check_json_bounds(plain, source=target, what="metadata", limits=DEFAULT_LIMITS)
        return validate(plain, kind, source=target)

    return complete


def write_model(
    path: Path, metadata: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> int:
    """Write the model file atomically; returns its size."""
    return write_container(
        path,
        complete=_completer("model", MODEL_FORMAT),
        metadata=metadata,
        arrays={},
        tensors=tensors,
        open_back=lambda temporary: ModelReader(ByteSource.open(temporary), DEFAULT_LIMITS),
    )


def write_shard(path: Path, metadata: Mapping[str, Any], codes: np.ndarray) -> int:
    """Write a shard of ``codes`` (n, E, *s) uint8 atomically; returns its size."""
    chunks = (min(len(codes), CHUNK_ITEMS), *codes.shape[1:])
    return write_container(
        path,
        complete=_completer("shard", SHARD_FORMAT),
        metadata=metadata,
        arrays={EMBEDDINGS: codes},
        tensors=None,
        array_chunks={EMBEDDINGS: chunks},
        open_back=lambda temporary: ShardReader(ByteSource.open(temporary), DEFAULT_LIMITS),
    )
