"""Where a :class:`~neurep.data.NeuralDataset`'s items come from: a converted folder, a list
of ``.nrep`` paths, a pack (:class:`~neurep.data.packs.PackReader`), or a collection
(:class:`CollectionItems`).

Each source has ``len()``, ``names`` (one string per item), ``record(i)`` (the item's index
fields), ``load(i, decode_checks=True)`` (a :class:`~neurep.datum.NeuralDatum`) and
``embedding(i)`` (its stored embedding as a float32 tensor).
Sources hold paths and small lists only, never an open file, so they pickle small into
data-loader workers.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurep.conversion.index import INDEX_NAME, read_index
from neurep.errors import InputError

__all__ = ["CollectionItems", "FileEmbeddings", "FolderItems", "PathItems", "open_items"]


class FileEmbeddings:
    """``embedding(i)`` for sources of ``.nrep`` files: the file validated, nothing decoded
    (``load(i, decode_checks=False)``); ``E x *s`` float32, video ``T x E x *s``."""

    def embedding(self, index: int):
        import torch

        datum = self.load(index, decode_checks=False)
        embedding = torch.from_numpy(datum.embedding())
        return embedding if datum.item_axis else embedding[0]


class FolderItems(FileEmbeddings):
    """The items of a ``neurep convert`` output folder, as its index lists them.

    Items are the index's latest ``ok`` line for each output whose file is there, in the
    order of their first line (the order items were converted in). A folder without an
    index gives its ``.nrep`` files, sorted, with empty records.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        index = self.root / INDEX_NAME
        if index.is_file():
            latest = read_index(index).latest
            rows = [row for row in latest.values() if row.get("status") == "ok"]
            self.names = [row["output"] for row in rows if (self.root / row["output"]).is_file()]
            self._records = {row["output"]: row for row in rows}
        else:
            found = sorted(self.root.rglob("*.nrep"))
            self.names = [path.relative_to(self.root).as_posix() for path in found]
            self._records = {}
        if not self.names:
            raise InputError(f"{self.root}: no converted items (no ok line in {INDEX_NAME})")

    def __len__(self) -> int:
        return len(self.names)

    def record(self, index: int) -> dict[str, Any]:
        return copy.deepcopy(self._records.get(self.names[index], {}))

    def load(self, index: int, *, decode_checks: bool = True):
        return _open_datum(self.root / self.names[index], decode_checks)


class PathItems(FileEmbeddings):
    """A list of ``.nrep`` paths; a record is read from each file's metadata when asked."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.names = [os.fspath(path) for path in paths]
        if not self.names:
            raise InputError("NeuralDataset got an empty list of .nrep paths")
        missing = [name for name in self.names if not os.path.isfile(name)]
        if missing:
            raise InputError(f"no such .nrep file: {', '.join(missing[:3])}")

    def __len__(self) -> int:
        return len(self.names)

    def record(self, index: int) -> dict[str, Any]:
        from neurep.formats import open_nrep

        path = self.names[index]
        with open_nrep(path) as reader:
            metadata = reader.metadata
        modality = metadata.get("modality", {})
        return {
            "output": path,
            "source": modality.get("configuration", {}).get("source"),
            "modality": modality.get("name"),
            "bytes": os.path.getsize(path),
            "quality": metadata.get("quality", {}),
            "status": "ok",
        }

    def load(self, index: int, *, decode_checks: bool = True):
        return _open_datum(self.names[index], decode_checks)


class CollectionItems:
    """The items of a collection (:func:`neurep.fit_collection`), opened lazily.

    It holds the folder's path only: the :class:`~neurep.collection.NeuralCollection` is
    opened on first use in each process (a forked or spawned ``DataLoader`` worker opens
    its own), and pickling keeps the path alone. ``embedding(i)`` is item i's dequantized
    code, ``E x *s`` float32.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        from neurep.collection import is_collection

        self.path = Path(folder)
        if not is_collection(self.path):
            raise InputError(f"{self.path}: not a collection (no collection.json)")
        self._opened: tuple[int, Any] | None = None
        if len(self) == 0:
            raise InputError(f"{self.path}: the collection holds no items")

    @property
    def collection(self):
        """The collection, opened in this process."""
        if self._opened is None or self._opened[0] != os.getpid():
            from neurep.collection import NeuralCollection

            self._opened = (os.getpid(), NeuralCollection(self.path))
        return self._opened[1]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._opened = None

    def __len__(self) -> int:
        return len(self.collection)

    @property
    def names(self) -> list[str]:
        return self.collection.names

    def record(self, index: int) -> dict[str, Any]:
        return dict(self.collection.record(index))

    def load(self, index: int, *, decode_checks: bool = True):
        return self.collection[index]

    def embedding(self, index: int):
        import torch

        return torch.from_numpy(self.collection.embeddings([index])[0])


def _open_datum(path: str | os.PathLike, decode_checks: bool):
    """``path`` as a NeuralDatum; without ``decode_checks`` for the embedding alone (see
    :meth:`NeuralDatum._from_reader <neurep.datum.NeuralDatum._from_reader>`)."""
    from neurep.datum import NeuralDatum
    from neurep.formats import open_nrep

    return NeuralDatum._from_reader(open_nrep(path), decode_checks=decode_checks)


def open_items(source: Any):
    """The item source for ``source``: a folder, a collection, a pack (``.h5``/``.hdf5``),
    or paths."""
    from neurep.collection import NeuralCollection, is_collection
    from neurep.data.packs import PackReader, is_pack

    if isinstance(source, NeuralCollection):
        return CollectionItems(source.path)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if is_collection(path):
            return CollectionItems(path)
        if path.is_dir():
            return FolderItems(path)
        if is_pack(path):
            return PackReader(path)
        if path.suffix.lower() == ".nrep" and path.is_file():
            return PathItems([path])
        if not path.exists():
            raise InputError(f"{path}: no such folder, pack or file")
        raise InputError(
            f"{path}: not a converted folder, a collection, a pack (.h5) or a .nrep file; "
            "pass a folder, a collection, a pack or a list of .nrep paths"
        )
    if isinstance(source, Sequence) and not isinstance(source, bytes | bytearray):
        return PathItems(source)
    raise TypeError(
        "NeuralDataset takes a folder, a collection, a pack or a list of .nrep paths, "
        f"not {type(source).__name__}"
    )
