"""Reading a ``.nrep`` file: :func:`open_nrep` and :class:`NrepReader`."""

from __future__ import annotations

import itertools
import math
import os
import warnings
from typing import Any

import numpy as np
import torch

from neurep.errors import FormatError, ResourceLimitError
from neurep.formats._json import load_json
from neurep.formats._limits import DEFAULT_LIMITS, ReadLimits
from neurep.formats._memo import PassedChecks
from neurep.formats._metadata import (
    FORMAT_MINOR,
    NrepFormatWarning,
    validate_metadata,
)
from neurep.formats._opened import OPENED, metadata_copy
from neurep.formats._selection import (
    chunk_part,
    normalize_selection,
    touched_chunk_count,
    touched_chunks,
)
from neurep.formats._source import ByteSource
from neurep.formats._weights import (
    WEIGHTS_MEMBER,
    load_tensors,
    sha256_hex,
    validate_safetensors,
)
from neurep.formats._zarr_meta import (
    ARRAY_NAME_PATTERN,
    ROOT_METADATA,
    ArraySpec,
    parse_array_metadata,
    parse_chunk_index,
    parse_group_metadata,
)
from neurep.formats._zipindex import ZipIndex
from neurep.formats._zstd import compress_bound, decode_chunk

#: Array descriptions that passed, by (zarr.json bytes, array name, limits): the files of
#: one dataset describe their embeddings alike. ArraySpec is frozen.
_PASSED_ARRAYS: PassedChecks[ArraySpec] = PassedChecks()

_SMALL_GRID = 1024  # touched grid cells always walked directly, even if absent


class _DecodeBudget:
    """Bytes one ``read_array`` call may still decode (chunks are decoded whole).

    Without it, a small file of highly compressible zstd chunks could make one read decode
    gigabytes chunk after chunk.
    """

    def __init__(self, remaining: int, source: str, array: str) -> None:
        self.remaining = remaining
        self.source = source
        self.array = array

    def spend(self, nbytes: int) -> None:
        self.remaining -= nbytes
        if self.remaining < 0:
            raise ResourceLimitError(
                f"{self.source}: reading this selection of array {self.array!r} decodes more "
                "than ReadLimits.max_decoded_bytes (result plus whole chunks); read a smaller "
                "selection or raise the limit"
            )


def open_nrep(
    path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview,
    *,
    limits: ReadLimits | None = None,
    name: str | None = None,
) -> NrepReader:
    """Open a ``.nrep`` file, validating its ZIP directory and metadata but reading no payload.

    Args:
        path_or_bytes: a path, or the whole file's bytes.
        limits: bounds on what the file may declare (:class:`ReadLimits` defaults if None).
        name: what error messages call bytes (a pack's ``data.h5:a/b.nrep``); paths name
            themselves.

    Raises:
        FormatError: the bytes are not a valid ``.nrep`` (damaged, foreign, tampered...).
        UnsupportedVersionError: written by a newer major version of the format.
        ResourceLimitError: the file declares more than ``limits`` allow.
        FileNotFoundError, IsADirectoryError, PermissionError: problems with the path itself.
    """
    source = ByteSource.open(path_or_bytes, name)
    try:
        return NrepReader(source, DEFAULT_LIMITS if limits is None else limits)
    except BaseException:
        source.close()
        raise


class NrepReader:
    """An open ``.nrep`` file. Use as a context manager, or call :meth:`close`.

    Attributes:
        metadata: the ``neurep`` metadata dict (validated; treat as read-only).
        path: the file path, or None when opened from bytes.
        name: what error messages call the file (its path, or the name given for bytes).
        nbytes: the file size in bytes.
        array_names: names of the zarr arrays in the file, sorted.
    """

    def __init__(self, source: ByteSource, limits: ReadLimits) -> None:
        self._source = source
        self._limits = limits
        self.path: str | None = source.path
        self.name: str = source.name
        self.nbytes: int = source.size
        # subclasses (collection files) validate more than this class: they are not memoised
        key = OPENED.key(source, limits) if type(self) is NrepReader else None
        state = None if key is None else OPENED.get(key)
        if state is not None:
            self._index = ZipIndex(source, state.members)
            self.metadata: dict[str, Any] = metadata_copy(state)
            self._arrays: dict[str, ArraySpec] = state.arrays
            self._present_chunks = state.present_chunks
        else:
            self._index = ZipIndex.parse(source, limits)
            self._check_metadata_volume()
            self.metadata = self._read_metadata()
            self._arrays = self._read_array_specs()
            self._check_cross_references()
            if key is not None and not self._newer_minor():  # newer minors may warn
                OPENED.put(
                    key, self._index.members, self.metadata, self._arrays, self._present_chunks
                )
        self.array_names: tuple[str, ...] = tuple(sorted(self._arrays))

    # -- opening -------------------------------------------------------------------------
    def _member_json(self, member: str, what: str) -> Any:
        return self._parse_json(self._member_bytes(member, what), what)

    def _member_bytes(self, member: str, what: str) -> bytes:
        info = self._index.members[member]
        if info.size > self._limits.max_metadata_bytes:
            raise ResourceLimitError(
                f"{self._source.name}: {what} is {info.size} bytes, more than "
                f"ReadLimits.max_metadata_bytes={self._limits.max_metadata_bytes}"
            )
        return self._index.read(member)

    def _parse_json(self, data: bytes, what: str) -> Any:
        return load_json(data, source=self._source.name, what=what, limits=self._limits)

    def _check_metadata_volume(self) -> None:
        total = sum(
            member.size
            for name, member in self._index.members.items()
            if name == ROOT_METADATA or name.endswith("/" + ROOT_METADATA)
        )
        if total > self._limits.max_total_metadata_bytes:
            raise ResourceLimitError(
                f"{self._source.name}: its zarr.json members hold {total} bytes, more than "
                f"ReadLimits.max_total_metadata_bytes={self._limits.max_total_metadata_bytes}"
            )

    def _read_metadata(self) -> dict[str, Any]:
        name = self._source.name
        if ROOT_METADATA not in self._index.members:
            raise FormatError(f"{name}: a ZIP file without a root zarr.json, so not a .nrep file")
        root = self._member_json(ROOT_METADATA, "root zarr.json")
        metadata = parse_group_metadata(root, source=name)
        return validate_metadata(metadata, source=name)

    def _newer_minor(self) -> bool:
        return int(self.metadata["format_version"].split(".")[1]) > FORMAT_MINOR

    def _read_array_specs(self) -> dict[str, ArraySpec]:
        name = self._source.name
        newer_minor = self._newer_minor()
        arrays: dict[str, ArraySpec] = {}
        chunk_members: list[tuple[str, str]] = []
        unknown: list[str] = []
        for member in self._index.members:
            if member in (ROOT_METADATA, WEIGHTS_MEMBER):
                continue
            array_name, _, rest = member.partition("/")
            if not ARRAY_NAME_PATTERN.fullmatch(array_name) or not rest:
                unknown.append(member)
            elif rest == "zarr.json":
                what = f"zarr.json of array {array_name!r}"
                raw = self._member_bytes(member, what)
                arrays[array_name] = _PASSED_ARRAYS.get(
                    (bytes(raw), array_name, self._limits),
                    lambda raw=raw, what=what, array_name=array_name: parse_array_metadata(
                        self._parse_json(raw, what),
                        name=array_name,
                        source=name,
                        limits=self._limits,
                    ),
                )
            else:
                chunk_members.append((array_name, rest))
        present: dict[str, list[tuple[int, ...]]] = {array_name: [] for array_name in arrays}
        for array_name, rest in chunk_members:
            spec = arrays.get(array_name)
            if spec is None or not (rest == "c" or rest.startswith("c/")):
                unknown.append(f"{array_name}/{rest}")
                continue
            present[array_name].append(parse_chunk_index(spec, rest, source=name))
            size = self._index.members[f"{array_name}/{rest}"].size
            if spec.zstd and not 0 < size <= compress_bound(spec.chunk_nbytes):
                raise FormatError(
                    f"{name}: zstd chunk {array_name + '/' + rest!r} is {size} bytes, more than "
                    f"zstd can need for {spec.chunk_nbytes} bytes"
                )
            if not spec.zstd and size != spec.chunk_nbytes:
                raise FormatError(
                    f"{name}: chunk {array_name + '/' + rest!r} is {size} bytes, expected "
                    f"{spec.chunk_nbytes} (chunk_shape {list(spec.chunks)} x {spec.dtype.name})"
                )
        if unknown:
            listed = ", ".join(repr(member) for member in unknown[:5])
            if not newer_minor:
                raise FormatError(f"{name}: unexpected ZIP members {listed}")
            warnings.warn(
                NrepFormatWarning(
                    f"{name}: ignoring ZIP members this neurep does not know: {listed}"
                ),
                stacklevel=4,
            )
        self._present_chunks = present
        return arrays

    def _check_cross_references(self) -> None:
        name = self._source.name
        weights = self.metadata["weights"]
        member = self._index.members.get(WEIGHTS_MEMBER)
        if member is None:
            raise FormatError(f"{name}: the weights member {WEIGHTS_MEMBER!r} is missing")
        if member.size != weights["nbytes"]:
            raise FormatError(
                f"{name}: metadata weights/nbytes says {weights['nbytes']} but member "
                f"{WEIGHTS_MEMBER!r} has {member.size} bytes"
            )
        embedding = self.metadata["embedding"]
        spec = self._arrays.get(embedding["array"])
        if spec is None:
            raise FormatError(
                f"{name}: metadata embedding/array names {embedding['array']!r}, which is not "
                f"an array in the file (arrays: {sorted(self._arrays)})"
            )
        if list(spec.shape) != list(embedding["shape"]) or spec.dtype.name != embedding["dtype"]:
            raise FormatError(
                f"{name}: metadata embedding says shape {embedding['shape']} "
                f"{embedding['dtype']}, the array {spec.name!r} is {list(spec.shape)} "
                f"{spec.dtype.name}"
            )

    # -- reading payload -----------------------------------------------------------------
    def read_array(self, name: str, selection: Any = None) -> np.ndarray:
        """Read ``array[selection]``, touching only the chunks the selection needs.

        Args:
            name: one of :attr:`array_names`.
            selection: None (everything), an int, a slice, or a tuple of ints / slices /
                one Ellipsis, as in numpy basic indexing (negative steps allowed).

        Returns:
            A new native-endian numpy array of shape ``array[selection].shape``.
        """
        spec = self._arrays.get(name)
        if spec is None:
            raise KeyError(f"{self._source.name}: no array {name!r} (arrays: {self.array_names})")
        axes = normalize_selection(selection, spec.shape)
        full_shape = tuple(len(axis.positions) for axis in axes)
        out_shape = tuple(len(axis.positions) for axis in axes if axis.keep)
        dtype = spec.dtype.newbyteorder("=")
        out_bytes = math.prod(full_shape) * dtype.itemsize
        if out_bytes > self._limits.max_decoded_bytes:
            raise ResourceLimitError(
                f"{self._source.name}: reading {out_shape} of array {name!r} needs {out_bytes} "
                f"bytes, more than ReadLimits.max_decoded_bytes="
                f"{self._limits.max_decoded_bytes}; read a smaller selection"
            )
        if not all(full_shape):
            return np.empty(out_shape, dtype=dtype)
        positions = [axis.positions for axis in axes]
        present = self._present_chunks[name]
        touched = math.prod(
            touched_chunk_count(r, chunk) for r, chunk in zip(positions, spec.chunks, strict=True)
        )
        # Cost is bounded by the chunks actually stored: walk the touched grid cells when they
        # are few, else only the stored chunks (absent ones read as the fill value).
        budget = _DecodeBudget(self._limits.max_decoded_bytes - out_bytes, self._source.name, name)
        if touched <= len(present) + _SMALL_GRID:
            out = np.empty(full_shape, dtype=dtype)
            self._fill_touched(spec, positions, out, budget)
        else:
            out = np.full(full_shape, spec.fill_value, dtype=dtype)
            self._fill_present(spec, positions, present, out, budget)
        return out.reshape(out_shape)

    def _fill_touched(
        self, spec: ArraySpec, positions: list[range], out: np.ndarray, budget: _DecodeBudget
    ) -> None:
        """Fill ``out`` (full-rank) chunk by chunk over every grid cell the selection touches."""
        per_axis = [
            list(touched_chunks(r, chunk)) for r, chunk in zip(positions, spec.chunks, strict=True)
        ]
        for combination in itertools.product(*per_axis):
            chunk_index = tuple(chunk_id for chunk_id, _ in combination)
            output = tuple(part.output for _, part in combination)
            inside = tuple(part.inside for _, part in combination)
            block = self._read_chunk(spec, chunk_index, budget)
            out[output] = spec.fill_value if block is None else block[inside]

    def _fill_present(
        self,
        spec: ArraySpec,
        positions: list[range],
        present: list[tuple[int, ...]],
        out: np.ndarray,
        budget: _DecodeBudget,
    ) -> None:
        """Fill ``out`` (pre-filled with the fill value) from the stored chunks only."""
        for chunk_index in present:
            parts = [
                chunk_part(r, chunk, chunk_id)
                for r, chunk, chunk_id in zip(positions, spec.chunks, chunk_index, strict=True)
            ]
            if all(part is not None for part in parts):
                output = tuple(part.output for part in parts)
                inside = tuple(part.inside for part in parts)
                block = self._read_chunk(spec, chunk_index, budget)
                assert block is not None  # only stored chunks are listed
                out[output] = block[inside]

    def _read_chunk(
        self, spec: ArraySpec, chunk_index: tuple[int, ...], budget: _DecodeBudget
    ) -> np.ndarray | None:
        """The chunk at ``chunk_index`` (shape ``spec.chunks``), or None if it is not stored."""
        member = spec.chunk_member(chunk_index)
        if member not in self._index.members:
            return None
        budget.spend(spec.chunk_nbytes)
        raw = self._index.read(member)
        if spec.zstd:
            raw = decode_chunk(raw, spec.chunk_nbytes, f"{self._source.name}: chunk {member!r}")
        block = np.frombuffer(raw, dtype=spec.dtype).reshape(spec.chunks)
        if spec.dtype.kind == "b":
            return block.view(np.uint8) != 0
        return block

    def read_tensors(self) -> dict[str, torch.Tensor]:
        """Read the weights member: checks its size, CRC-32, SHA-256 and safetensors header.

        Returns:
            ``{name: tensor}`` on the CPU, dtypes as stored (see ``metadata["weights"]``).
        """
        name = self._source.name
        member = self._index.members[WEIGHTS_MEMBER]
        if member.size > self._limits.max_decoded_bytes:
            raise ResourceLimitError(
                f"{name}: the weights are {member.size} bytes, more than "
                f"ReadLimits.max_decoded_bytes={self._limits.max_decoded_bytes}"
            )
        data = self._index.read(WEIGHTS_MEMBER)
        expected = self.metadata["weights"]["sha256"]
        if sha256_hex(data) != expected:
            raise FormatError(
                f"{name}: member {WEIGHTS_MEMBER!r} does not match metadata weights/sha256 "
                "(the file was modified or damaged)"
            )
        validate_safetensors(data, source=name, limits=self._limits)
        return load_tensors(data, source=name)

    # -- lifetime ------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickle as "reopen this path" (or these bytes), e.g. for DataLoader workers."""
        if self._source.closed:
            raise ValueError(f"{self._source.name}: cannot pickle a closed reader")
        origin = self.path if self.path is not None else self._source.read(0, self.nbytes)
        return {"origin": origin, "limits": self._limits}

    def __setstate__(self, state: dict[str, Any]) -> None:
        source = ByteSource.open(state["origin"])
        try:
            self.__init__(source, state["limits"])
        except BaseException:
            source.close()
            raise

    def close(self) -> None:
        """Release the file; later reads raise ``ValueError``."""
        self._source.close()

    def __enter__(self) -> NrepReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"NrepReader({self._source.name!r}, {self.nbytes} bytes, "
            f"arrays={list(self.array_names)})"
        )
