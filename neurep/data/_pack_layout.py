"""The HDF5 pack layout (docs/FORMAT.md, "HDF5 packs"): names, dtypes, which files of a folder
go in, and the validation of a pack's tables, which are untrusted input like any ``.nrep`` file.

A pack holds ``/data`` (1-D uint8, every file's bytes back to back), ``/files`` (one row per
file: ``path``, ``offset``, ``size``, ``sha256``) and ``/items`` (one row per item: ``output``,
``source``, ``file``, ``bytes``, ``modality``, ``psnr``, ``ms_ssim``, ``record``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurep.errors import FormatError, InputError, MissingDependencyError, UnsupportedVersionError

FORMAT_NAME = "neurep-pack"
PACK_VERSION = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Most rows a table may declare (a hostile file must not make reading it allocate absurdly).
MAX_ROWS = 10_000_000
INSTALL_HINT = "pip install 'neurep[convert]'"
LOCK_NAME = ".neurep-convert.lock"  # neurep.conversion.api.LOCK_NAME: never packed

FILE_FIELDS = ("path", "offset", "size", "sha256")
ITEM_FIELDS = ("output", "source", "file", "bytes", "modality", "psnr", "ms_ssim", "record")
_HEX64 = re.compile(rb"[0-9a-f]{64}")


def h5py_module():
    """The ``h5py`` module, or MissingDependencyError naming the install that brings it."""
    try:
        import h5py
    except ImportError as error:
        raise MissingDependencyError(f"HDF5 packs need h5py: {INSTALL_HINT}") from error
    return h5py


def file_dtype():
    """numpy dtype of a ``/files`` row: (path: vlen UTF-8, offset: u8, size: u8, sha256: S64)."""
    text = h5py_module().string_dtype("utf-8")
    return np.dtype([("path", text), ("offset", "<u8"), ("size", "<u8"), ("sha256", "S64")])


def item_dtype():
    """numpy dtype of an ``/items`` row (strings vlen UTF-8, ``file``/``bytes`` u8, f8 quality)."""
    text = h5py_module().string_dtype("utf-8")
    return np.dtype(
        [
            ("output", text),
            ("source", text),
            ("file", "<u8"),
            ("bytes", "<u8"),
            ("modality", text),
            ("psnr", "<f8"),
            ("ms_ssim", "<f8"),
            ("record", text),
        ]
    )


def unsafe_path(path: str) -> str | None:
    """Why ``path`` may not name a file inside a folder (None if it may): relative POSIX paths
    only, no empty, ``.`` or ``..`` part, no backslash or NUL."""
    if not path:
        return "an empty path"
    if "\x00" in path or "\\" in path:
        return "a NUL or backslash in the path"
    if path.startswith("/"):
        return "an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "an empty, '.' or '..' part"
    return None


def folder_files(root: Path) -> list[str]:
    """Relative POSIX paths of every regular file under ``root``, sorted; leaves out the
    convert lock and hidden ``.*.tmp`` leftovers of interrupted writes. InputError on a
    symlink or anything that is not a regular file or a folder."""
    found: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_symlink():
                    raise InputError(f"{root}: {relative} is a symbolic link; packs hold files")
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), relative + "/")
                elif entry.is_file(follow_symlinks=False):
                    leftover = entry.name.startswith(".") and entry.name.endswith(".tmp")
                    if not leftover and relative != LOCK_NAME:
                        found.append(packable(root, relative))
                else:
                    raise InputError(f"{root}: {relative} is not a regular file or a folder")

    walk(root, "")
    return sorted(found)


def packable(root: Path, relative: str) -> str:
    """``relative``, or InputError if unpack could not restore that name (a backslash, a
    name that is not UTF-8)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{root}: {relative!r} is not a UTF-8 file name") from None
    if unsafe_path(relative):
        raise InputError(f"{root}: {relative!r}: {unsafe_path(relative)} cannot be packed")
    return relative


@dataclass
class PackTables:
    """What a validated pack holds: ``files`` (path, offset, size, sha256 hex) by file row,
    ``items`` (output, source, file row, record dict) by item row, and ``/data``'s length."""

    files: list[tuple[str, int, int, str]]
    items: list[tuple[str, str, int, dict[str, Any]]]
    data_size: int


def _text(value: Any, where: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{where}: not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise FormatError(f"{where}: not a string")


def _table(h5file, name: str, fields: tuple[str, ...], pack: str):
    """The rows of compound dataset ``name``, after checking its shape and field names."""
    h5py = h5py_module()
    table = h5file.get(name)
    if not isinstance(table, h5py.Dataset):
        raise FormatError(f"{pack}: not a neurep pack: no /{name} table")
    names = table.dtype.names or ()
    if table.ndim != 1 or tuple(names) != fields:
        raise FormatError(
            f"{pack}: bad /{name} table: expected 1-D fields {list(fields)}, "
            f"found shape {list(table.shape)} fields {list(names)}"
        )
    if table.shape[0] > MAX_ROWS:
        raise FormatError(f"{pack}: /{name} declares {table.shape[0]} rows (at most {MAX_ROWS})")
    for field in fields:
        kind = table.dtype[field].kind
        if field in ("offset", "size", "file", "bytes"):
            ok = kind in "ui"
        elif field in ("psnr", "ms_ssim"):
            ok = kind == "f"
        elif field == "sha256":
            ok = kind == "S" and table.dtype[field].itemsize == 64
        else:
            ok = kind == "O" and h5py.check_string_dtype(table.dtype[field]) is not None
        if not ok:
            raise FormatError(
                f"{pack}: bad /{name} table: field {field!r} has dtype {table.dtype[field]}"
            )
    return table[()]


def read_tables(h5file, pack: str) -> PackTables:
    """Validate an open pack's root attributes and tables; FormatError naming ``pack`` and the
    problem (foreign file, newer version, missing table, bad dtype, offset out of range...)."""
    h5py = h5py_module()
    attrs = h5file.attrs
    kind = attrs.get("format")
    if isinstance(kind, bytes):
        kind = kind.decode("utf-8", "replace")
    if kind != FORMAT_NAME:
        raise FormatError(f"{pack}: not a neurep pack (format attribute {kind!r})")
    version = attrs.get("pack_version")
    if not isinstance(version, numbers.Real) or isinstance(version, bool | np.bool_):
        raise FormatError(f"{pack}: bad pack_version attribute {version!r:.40}")
    if not float(version).is_integer() or version < 1:
        raise FormatError(f"{pack}: bad pack_version attribute {version!r:.40}")
    if version > PACK_VERSION:
        raise UnsupportedVersionError(
            f"{pack}: pack version {int(version)} is newer than this neurep reads ({PACK_VERSION})"
        )
    data = h5file.get("data")
    if (
        not isinstance(data, h5py.Dataset)
        or data.ndim != 1
        or data.dtype.kind != "u"
        or (data.dtype.itemsize != 1)
    ):
        raise FormatError(f"{pack}: not a neurep pack: no 1-D uint8 /data array")
    data_size = int(data.shape[0])
    files = []
    seen: set[str] = set()
    for row, (path, offset, size, digest) in enumerate(_table(h5file, "files", FILE_FIELDS, pack)):
        path = _text(path, f"{pack}: /files row {row}")
        problem = unsafe_path(path)
        if problem:
            raise FormatError(f"{pack}: file {path!r}: hostile path ({problem})")
        if path in seen:
            raise FormatError(f"{pack}: file {path!r} is listed twice")
        seen.add(path)
        offset, size = int(offset), int(size)
        if offset < 0 or size < 0 or offset > data_size or size > data_size - offset:
            raise FormatError(
                f"{pack}: file {path!r}: bytes {offset}..{offset + size} are outside /data "
                f"({data_size} bytes)"
            )
        if not _HEX64.fullmatch(digest):
            raise FormatError(f"{pack}: file {path!r}: bad sha256 {digest!r:.80}")
        files.append((path, offset, size, digest.decode("ascii")))
    items = []
    outputs: set[str] = set()
    table = _table(h5file, "items", ITEM_FIELDS, pack)
    for row, (output, source, file, *_, record) in enumerate(table):
        output = _text(output, f"{pack}: /items row {row}")
        source = _text(source, f"{pack}: item {output!r}: source")
        file = int(file)
        if not 0 <= file < len(files) or files[file][0] != output:
            raise FormatError(f"{pack}: item {output!r}: file row {file} is not its file")
        if output in outputs:
            raise FormatError(f"{pack}: item {output!r} is listed twice")
        outputs.add(output)
        text = _text(record, f"{pack}: item {output!r}: record")
        try:
            parsed = json.loads(text) if text else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise FormatError(f"{pack}: item {output!r}: record is not a JSON object")
        items.append((output, source, file, parsed))
    for name, expected in (("files", len(files)), ("items", len(items))):
        declared = attrs.get(name)
        if not isinstance(declared, numbers.Integral) or int(declared) != expected:
            raise FormatError(f"{pack}: attribute {name}={declared} but /{name} has {expected}")
    return PackTables(files, items, data_size)


def quality_value(row: dict[str, Any], name: str) -> float:
    """``row["quality"][name]`` as a float, NaN if absent or not a number."""
    quality = row.get("quality")
    value = quality.get(name) if isinstance(quality, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
