"""What ``neurep convert`` converts: the items of a folder, a glob, a list of paths, or the
rows of an HDF5 dataset.

:func:`find_items` turns a SOURCE into a list of small, picklable items. Each item knows

- ``output``: its ``.nrep`` path relative to the output folder (POSIX separators), which
  mirrors the item's path relative to the source's root (``a/b.png`` -> ``a/b.nrep``; two
  sources that would share an output keep their suffix: ``b.png.nrep``, ``b.jpg.nrep``);
  an HDF5 row ``123`` of dataset ``NAME`` is ``NAME/000123.nrep``;
- ``stat()``: the size and modification time of the file it lives in (a cheap "has it
  changed?" check before any hashing);
- ``read()``: the object :func:`neurep.fit` takes and the sha256 of the item's bytes (a
  file's bytes; an HDF5 row's dtype, shape and bytes). An HDF5 row is read by opening the
  file where ``read`` runs (a worker) and reading that one row; no h5py handle is ever
  pickled, and the dataset is never read whole.
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from neurep.errors import InputError, MissingDependencyError

__all__ = [
    "HDF5_SUFFIXES",
    "LIST_COMMENT",
    "FileItem",
    "Item",
    "RowItem",
    "find_items",
    "is_hdf5",
    "modality_extensions",
]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Lines of a list file that start with this are comments.
LIST_COMMENT = "#"
_HASH_CHUNK = 1 << 20
#: Digits of an HDF5 row's output name at least (``000123.nrep``).
_ROW_DIGITS = 6
INSTALL_HINT = "pip install 'neurep[convert]'"


@dataclass(frozen=True)
class FileItem:
    """One file: ``path`` absolute, ``label`` as the user named it, ``output`` relative."""

    path: str
    label: str
    output: str

    def stat(self) -> tuple[int, int]:
        """(size in bytes, mtime in ns) of the file; OSError if it is gone."""
        status = os.stat(self.path)
        return status.st_size, status.st_mtime_ns

    def read(self) -> tuple[Any, str]:
        """(what :func:`neurep.fit` takes, the file's sha256). A folder (a list entry of
        video frames) hashes its files' names and bytes in name order."""
        return self.path, _sha256_of_path(Path(self.path))

    def index_fields(self) -> dict[str, Any]:
        return {"source": self.label}


@dataclass(frozen=True)
class RowItem:
    """Row ``row`` of the dataset ``key`` of the HDF5 file ``path`` (absolute)."""

    path: str
    label: str
    key: str
    row: int
    output: str

    def stat(self) -> tuple[int, int]:
        status = os.stat(self.path)
        return status.st_size, status.st_mtime_ns

    def read(self) -> tuple[Any, str]:
        """(the row as a numpy array, sha256 of its dtype, shape and bytes)."""
        import numpy as np

        values = np.ascontiguousarray(_dataset(self.path, self.key)[self.row])
        return values, row_sha256(values)

    def index_fields(self) -> dict[str, Any]:
        return {"source": self.label, "key": self.key, "row": self.row}


Item = FileItem | RowItem


def row_sha256(values: Any) -> str:
    """sha256 of an array's dtype (``<f4``), shape and C-order bytes."""
    digest = hashlib.sha256(f"{values.dtype.str} {list(values.shape)}\n".encode())
    digest.update(memoryview(values).cast("B") if values.size else b"")
    return digest.hexdigest()


def find_items(
    source: str | os.PathLike,
    *,
    key: str | None = None,
    modality: str | None = None,
    exclude: str | os.PathLike | None = None,
) -> list[Item]:
    """The items of ``source``, in a stable order.

    Args:
        source: a folder (searched recursively for files of the registered modalities'
            extensions; hidden files and folders skipped), a glob (``"data/**/*.png"``),
            a text file listing one path a line (relative to the list's folder; blank
            lines and ``#`` comments skipped), or an HDF5 file (with ``key``).
        key: the HDF5 dataset whose rows are the items (``N x H x W x C`` images,
            ``N x D x H x W`` volumes, ``N x L`` signals).
        modality: when given, a folder yields only files of that modality's extensions.
        exclude: a folder whose contents are never items (the output folder).

    Raises:
        InputError: no such source, an HDF5 file without a usable ``key``, one plain data
            file (that is ``neurep fit``'s job), or outputs that would collide.
    """
    text = os.fspath(source)
    path = Path(text)
    skip = Path(exclude).resolve() if exclude is not None else None
    if key is not None:
        if not path.is_file() or not is_hdf5(path):
            raise InputError(f"{path}: --key/key= names a dataset, so SOURCE must be an HDF5 file")
        return _hdf5_rows(path, key)
    if path.is_dir():
        files = _walk(path, _extensions(modality), skip)
        return _file_items(files, path.resolve(), text)
    if path.is_file():
        if is_hdf5(path):
            raise InputError(
                f"{path}: is an HDF5 file; name the dataset whose rows are the items with "
                f"--key NAME (key= in Python); datasets: {_dataset_names(path)}"
            )
        if path.suffix.lower() in modality_extensions():
            raise InputError(
                f"{path}: is one data file; `neurep fit` converts one file, `neurep convert` "
                "takes a folder, a glob, a list of paths (a text file) or an HDF5 file"
            )
        return _listed(path, skip)
    if glob.has_magic(text):
        return _globbed(text, skip)
    raise InputError(f"{path}: no such file or folder")


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file, by its suffix or its signature."""
    if path.suffix.lower() in HDF5_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
    except OSError:
        return False


def modality_extensions(modality: str | None = None) -> frozenset[str]:
    """File suffixes (``.png``) of the registered modalities, or of ``modality`` only."""
    from neurep.modalities import registry

    adapters = [registry.get(modality)] if modality is not None else registry.adapters()
    return frozenset(suffix.lower() for adapter in adapters for suffix in adapter.extensions)


def _extensions(modality: str | None) -> frozenset[str]:
    extensions = modality_extensions(modality)
    if not extensions:
        raise InputError(
            f"the {modality} modality names no file extensions, so a folder holds no items "
            "of it; give a glob or a list of paths instead"
        )
    return extensions


# ---- files ---------------------------------------------------------------------------------


def _walk(root: Path, extensions: frozenset[str], skip: Path | None) -> list[Path]:
    """Files under ``root`` whose suffix is one of ``extensions``, in sorted order."""
    found = []
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".") and not _is_under(here / name, skip)
        )
        found += [
            here / name
            for name in sorted(names)
            if not name.startswith(".") and Path(name).suffix.lower() in extensions
        ]
    return found


def _globbed(pattern: str, skip: Path | None) -> list[Item]:
    files = sorted(
        Path(match)
        for match in glob.glob(pattern, recursive=True)
        if os.path.isfile(match) and not match.lower().endswith(".nrep")
    )
    files = [file for file in files if not _is_under(file, skip)]
    if not files:
        raise InputError(f"{pattern}: the glob matches no files")
    prefix = []
    for part in PurePath(pattern).parts:
        if glob.has_magic(part):
            break
        prefix.append(part)
    root = Path(*prefix) if prefix else Path(".")
    return _file_items(files, root.resolve(), str(root) if prefix else "")


def _listed(list_file: Path, skip: Path | None) -> list[Item]:
    """The paths listed in ``list_file``, one a line, relative to its folder."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(
            f"{list_file}: is neither a folder, an HDF5 file nor a UTF-8 list of paths"
        ) from None
    base = list_file.resolve().parent
    seen: dict[str, Path] = {}
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith(LIST_COMMENT):
            path = Path(os.path.abspath(base / os.path.expanduser(entry)))
            if not _is_under(path, skip):
                seen.setdefault(str(path), path)
    files = list(seen.values())
    if not files:
        raise InputError(f"{list_file}: lists no paths")
    parents = [str(file.parent) for file in files]
    root = base if _common([*parents, str(base)]) == str(base) else Path(_common(parents))
    return _file_items(files, root, None)


def _file_items(files: list[Path], root: Path, shown_root: str | None) -> list[Item]:
    """Items for ``files`` under ``root``; labels are ``shown_root/relative`` (or absolute)."""
    relative = [PurePosixPath(Path(os.path.abspath(file)).relative_to(root)) for file in files]
    outputs = _output_names(relative)
    items: list[Item] = []
    for file, rel, output in zip(files, relative, outputs, strict=True):
        label = str(Path(shown_root) / rel) if shown_root is not None else os.path.abspath(file)
        items.append(FileItem(os.path.abspath(file), label, output))
    return items


def _output_names(relative: list[PurePosixPath]) -> list[str]:
    """``a/b.png`` -> ``a/b.nrep``; sources that would share one keep their suffix."""
    plain = [str(rel.with_suffix(".nrep")) if rel.suffix else f"{rel}.nrep" for rel in relative]
    counts = _counts(plain)
    names = [
        f"{rel}.nrep" if counts[name] > 1 else name
        for rel, name in zip(relative, plain, strict=True)
    ]
    clashes = sorted(name for name, count in _counts(names).items() if count > 1)
    if clashes:
        raise InputError(
            f"several sources would be written to {clashes[0]}; rename them or convert "
            "them separately"
        )
    return names


def _counts(names: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _common(paths: list[str]) -> str:
    return os.path.commonpath(paths)


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        Path(os.path.abspath(path)).resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _sha256_of_path(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():  # a folder of video frames, listed as one item
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(f"{file.name}\n".encode())
            _hash_file(file, digest)
        return digest.hexdigest()
    _hash_file(path, digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest: Any) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)


# ---- HDF5 ----------------------------------------------------------------------------------


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise MissingDependencyError(f"reading HDF5 sources needs h5py: {INSTALL_HINT}") from error
    return h5py


def _hdf5_rows(path: Path, key: str) -> list[Item]:
    name = key.strip("/")
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise InputError(f"{key!r}: not a usable dataset name")
    h5py = _h5py()
    with h5py.File(path, "r") as file:
        dataset = file.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise InputError(f"{path}: has no dataset {name!r}; datasets: {_dataset_names(path)}")
        if dataset.ndim < 2:
            raise InputError(
                f"{path}: dataset {name!r} has shape {dataset.shape}; its rows must be the "
                "items (N x H x W x C images, N x D x H x W volumes, N x L signals)"
            )
        count = dataset.shape[0]
    digits = max(_ROW_DIGITS, len(str(max(count - 1, 0))))
    absolute = os.path.abspath(path)
    return [
        RowItem(absolute, str(path), name, row, f"{name}/{row:0{digits}d}.nrep")
        for row in range(count)
    ]


def _dataset_names(path: Path, limit: int = 20) -> str:
    h5py = _h5py()
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and len(names) <= limit:
            names.append(f"{name} {obj.shape}")

    try:
        with h5py.File(path, "r") as file:
            file.visititems(visit)
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None
    shown = ", ".join(names[:limit]) or "none"
    return shown + (", ..." if len(names) > limit else "")


# One open file per thread, reopened when the file changes: a worker reads many rows, and
# a Dask worker may run several items at once in threads (h5py handles are not shared).
_open = threading.local()


def _dataset(path: str, key: str) -> Any:
    status = os.stat(path)
    stamp = (path, status.st_size, status.st_mtime_ns)
    cached = getattr(_open, "file", None)
    if cached is None or cached[0] != stamp:
        if cached is not None:
            cached[1].close()
        _open.file = None
        _open.file = (stamp, _h5py().File(path, "r"))
    return _open.file[1][key]
