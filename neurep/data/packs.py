"""HDF5 packs: a converted folder (``neurep convert`` output) in one file, for random access.

:func:`pack` writes every file of the folder (each ``.nrep``, ``index.jsonl``, anything else)
into one HDF5 file, atomically, with the index as a table plain h5py reads; :func:`unpack`
restores the folder byte for byte; :class:`PackReader` reads items one at a time, also in
PyTorch DataLoader workers. The layout is in docs/FORMAT.md, "HDF5 packs". A pack is untrusted
input: its tables are validated when opened, every member's sha256 is checked when read, and
the ``.nrep`` bytes inside go through the same validation as a ``.nrep`` file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neurep.data._pack_layout import (
    FORMAT_NAME,
    HDF5_SIGNATURE,
    PACK_VERSION,
    file_dtype,
    folder_files,
    h5py_module,
    item_dtype,
    quality_value,
    read_tables,
)
from neurep.data._sources import FileEmbeddings
from neurep.errors import FormatError, InputError

__all__ = ["PackReader", "is_pack", "pack", "unpack"]

INDEX_NAME = "index.jsonl"  # neurep.conversion.index.INDEX_NAME
_CHUNK = 16 << 20  # bytes copied at a time


def is_pack(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file starting with the HDF5 signature (any suffix): a cheap sniff,
    never mistaken for a ``.nrep`` (a ZIP, ``PK``); :class:`PackReader` validates the rest."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


# -- pack -------------------------------------------------------------------------------------
def _items(root: Path, files: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(output, index row) of each item: the latest ``ok`` row of ``index.jsonl`` for each
    output whose file is in the pack, in order of the output's first line; without an index,
    every ``.nrep`` (sorted) with an empty row."""
    from neurep.conversion.index import read_index

    present = set(files)
    if INDEX_NAME not in present:
        return [(path, {}) for path in files if path.endswith(".nrep")]
    latest = read_index(root / INDEX_NAME).latest
    return [
        (output, row)
        for output, row in latest.items()
        if row.get("status") == "ok" and output in present
    ]


def _write_member(source: Path, data, offset: int, size: int) -> str:
    """Copy ``source`` (``size`` bytes) into ``data[offset:]``; return its sha256 hex."""
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        done = 0
        while done < size:
            chunk = handle.read(min(_CHUNK, size - done))
            if not chunk:
                break
            data[offset + done : offset + done + len(chunk)] = np.frombuffer(chunk, np.uint8)
            digest.update(chunk)
            done += len(chunk)
        if done != size or handle.read(1):
            raise InputError(f"{source}: changed while being packed (was {size} bytes)")
    return digest.hexdigest()


def pack(out_dir: str | os.PathLike, output: str | os.PathLike, *, progress: bool = True) -> Path:
    """Write the converted folder ``out_dir`` into the HDF5 file ``output``; return its path.

    Every regular file goes in (recursively, ``index.jsonl`` included, so :func:`unpack`
    restores the folder byte for byte), except the convert lock and ``.*.tmp`` leftovers;
    empty folders do not. The items are the latest ``ok`` index rows whose file exists, in
    index order (no index: every ``.nrep``, sorted). The file is written beside ``output``
    under a hidden temporary name, fsynced, validated and renamed into place: a failure or
    crash leaves an existing ``output`` as it was.

    Raises:
        InputError: ``out_dir`` is not a folder, holds a symlink or a non-regular file, or
            holds ``output`` itself.
    """
    from tqdm.auto import tqdm

    from neurep._version import __version__
    from neurep.formats._atomic import _fsync_directory, _mode_for

    h5py = h5py_module()
    root, target = Path(out_dir), Path(output).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if target.resolve().is_relative_to(root.resolve()):
        raise InputError(f"{output}: the pack may not be written inside the folder it packs")
    if target.is_dir():
        raise InputError(f"{output}: is a directory; give a file path ending in .h5")
    files = folder_files(root)
    sizes = [(root / path).stat().st_size for path in files]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.uint64)]).astype(np.uint64)
    items = _items(root, files)
    row_of = {path: row for row, path in enumerate(files)}
    mode = _mode_for(str(target))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with h5py.File(temporary, "w") as h5:
            h5.attrs.update(
                format=FORMAT_NAME,
                pack_version=PACK_VERSION,
                neurep=__version__,
                items=len(items),
                files=len(files),
            )
            data = h5.create_dataset("data", shape=(int(offsets[-1]),), dtype=np.uint8)
            table = np.zeros(len(files), dtype=file_dtype())
            bar = tqdm(total=int(offsets[-1]), unit="B", unit_scale=True, disable=not progress)
            with bar:
                for row, (path, size) in enumerate(zip(files, sizes, strict=True)):
                    digest = _write_member(root / path, data, int(offsets[row]), size)
                    table[row] = (path, offsets[row], size, digest.encode("ascii"))
                    bar.update(size)
            h5.create_dataset("files", data=table)
            rows = np.zeros(len(items), dtype=item_dtype())
            for row, (path, record) in enumerate(items):
                rows[row] = (
                    path,
                    str(record.get("source") or ""),
                    row_of[path],
                    sizes[row_of[path]],
                    str(record.get("modality") or ""),
                    quality_value(record, "psnr"),
                    quality_value(record, "ms_ssim"),
                    json.dumps(record, ensure_ascii=False, separators=(",", ":")) if record else "",
                )
            h5.create_dataset("items", data=rows)
        os.chmod(temporary, mode)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        PackReader(temporary).close()  # what was written reads back
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(str(target.parent))
    return Path(output)


# -- reading ----------------------------------------------------------------------------------
class PackReader(FileEmbeddings):
    """Read-only random access to a pack's items; safe to pickle into DataLoader workers.

    Opening validates the root attributes and the ``/files`` and ``/items`` tables, then
    closes the file; the HDF5 handle is opened on the first read in each process (reopened
    after a fork) and is never pickled, so a pickled reader is its path plus the tables.

    Attributes:
        path: the pack's path (str).
        names: item output paths (list[str]), in item order.
        files: every file's relative path (list[str]), in ``/files`` order.

    Raises:
        FormatError: not HDF5, damaged, not a neurep pack, or tables that do not add up.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file = None
        self._pid: int | None = None
        h5py = h5py_module()
        try:
            with h5py.File(self.path, "r") as h5:
                tables = read_tables(h5, self.path)
        except FormatError:
            raise
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise FormatError(f"{self.path}: not a readable HDF5 pack: {error}") from None
        self._files = tables.files
        self._items = tables.items
        self.files = [row[0] for row in tables.files]
        self.names = [row[0] for row in tables.items]
        self._lookup: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"PackReader({self.path!r}, items={len(self)}, files={len(self._files)})"

    def record(self, index: int) -> dict[str, Any]:
        """Item ``index``'s index row (a copy; ``{}`` when the pack had no index)."""
        return json.loads(json.dumps(self._items[self._index(index)][3]))

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"item indices are integers, not {index!r:.40}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} is out of range for {len(self)} items")
        return int(index) % len(self)

    def position(self, name: str | int) -> int:
        """The row of the item named ``name``: its output path, with or without ``.nrep``, or
        its source (when only one item has it). KeyError naming a few items if unknown."""
        if not isinstance(name, str):
            return self._index(name)
        if self._lookup is None:
            sources: dict[str, list[int]] = {}
            for row, (_, source, _, _) in enumerate(self._items):
                if source:
                    sources.setdefault(source, []).append(row)
            lookup = {source: rows[0] for source, rows in sources.items() if len(rows) == 1}
            lookup.update({n.removesuffix(".nrep"): row for row, n in enumerate(self.names)})
            lookup.update({n: row for row, n in enumerate(self.names)})
            self._lookup = lookup
        if name in self._lookup:
            return self._lookup[name]
        few = ", ".join(repr(n) for n in self.names[:5]) + (", ..." if len(self) > 5 else "")
        raise KeyError(f"{self.path}: no item {name!r} (items: {few or 'none'})")

    def _data(self):
        """The ``/data`` dataset of the h5py file, opened once per process (a forked worker
        opens its own); kept, since looking it up by name costs more than reading an item."""
        if self._file is None or self._pid != os.getpid():
            self._file = None  # an inherited handle belongs to the parent: never reuse it
            handle = h5py_module().File(self.path, "r")
            self._file, self._pid = (handle, handle["data"]), os.getpid()
        return self._file[1]

    def _read(self, file_row: int, what: str) -> bytes:
        _, offset, size, digest = self._files[file_row]
        try:
            data = self._data()[offset : offset + size].tobytes() if size else b""
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise FormatError(f"{self.path}: {what}: cannot read its bytes: {error}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise FormatError(f"{self.path}: {what}: damaged (sha256 does not match)")
        return data

    def read_file(self, path: str | int) -> bytes:
        """The bytes of the packed file ``path`` (relative path or ``/files`` row), checked."""
        row = self.files.index(path) if isinstance(path, str) else int(path)
        return self._read(row, f"file {self._files[row][0]!r}")

    def read_bytes(self, index: int | str) -> bytes:
        """The ``.nrep`` bytes of item ``index`` (row or name), sha256 checked."""
        row = self.position(index)
        return self._read(self._items[row][2], f"item {self.names[row]!r}")

    def load(self, index: int | str, *, decode_checks: bool = True):
        """Item ``index`` (row or name) as a :class:`neurep.NeuralDatum` (weights are decoded
        from memory on its first decode). FormatError ``"{pack}: item {name!r}: ..."`` when the
        bytes are damaged or not a valid ``.nrep``, now or on the first decode.
        ``decode_checks=False``: for reading the embedding alone (see
        :meth:`NeuralDatum._from_reader <neurep.datum.NeuralDatum._from_reader>`)."""
        from neurep.datum import NeuralDatum
        from neurep.formats import open_nrep

        row = self.position(index)
        # named so, every later error (weights are read on the first decode) names the item
        name = f"{self.path}: item {self.names[row]!r}"
        reader = open_nrep(self.read_bytes(row), name=name)
        return NeuralDatum._from_reader(reader, decode_checks=decode_checks)

    def close(self) -> None:
        """Close this process's HDF5 handle (reading again reopens it)."""
        if self._file is not None and self._pid == os.getpid():
            self._file[0].close()
        self._file = None

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None, _lookup=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# -- unpack -----------------------------------------------------------------------------------
def unpack(
    pack_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Restore the folder packed in ``pack_path`` at ``out_dir``, byte for byte; return it.

    The files are written into a hidden temporary folder beside ``out_dir``, each checked
    against its sha256, and the folder is renamed into place at the end: a failure leaves
    nothing half-written. ``force`` replaces an existing non-empty ``out_dir`` (moved aside,
    then deleted once the new one is in place).

    Raises:
        FormatError: the pack is damaged, a file fails its sha256 or has a hostile path.
        InputError: ``out_dir`` exists and is not an empty folder (without ``force``).
    """
    from tqdm.auto import tqdm

    from neurep.formats._atomic import _current_umask

    target = Path(out_dir).absolute()
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"{out_dir}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise InputError(f"{out_dir}: the folder is not empty (unpack with force to replace it)")
    with PackReader(pack_path) as reader:
        target.parent.mkdir(parents=True, exist_ok=True)
        building = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        )
        try:
            total = sum(row[2] for row in reader._files)
            with tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar:
                for row, (path, *_) in enumerate(reader._files):
                    _restore(building, path, reader.read_file(row), reader.path)
                    bar.update(reader._files[row][2])
            os.chmod(building, 0o777 & ~_current_umask())
            _move_into_place(building, target)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return Path(out_dir)


def _restore(root: Path, path: str, data: bytes, pack_name: str) -> None:
    """Write ``data`` to ``root/path`` (a new file: paths may not collide)."""
    destination = root.joinpath(*path.split("/"))
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except (FileExistsError, NotADirectoryError) as error:
        message = f"{pack_name}: file {path!r} collides with another file: {error}"
        raise FormatError(message) from None


def _move_into_place(building: Path, target: Path) -> None:
    """Rename the finished folder onto ``target`` (absent, empty, or moved aside first)."""
    from neurep.formats._atomic import _fsync_directory

    if target.is_dir() and any(target.iterdir()):
        old = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent)
        )
        os.replace(target, old / "folder")
        try:
            os.replace(building, target)
        except BaseException:
            os.replace(old / "folder", target)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(building, target)  # rename(2) replaces an empty folder
    _fsync_directory(str(target.parent))
