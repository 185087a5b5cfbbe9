"""Reading a collection: :class:`NeuralCollection`."""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurep.collection import _model
from neurep.collection._files import (
    EMBEDDINGS,
    MANIFEST,
    ShardReader,
    open_model,
    open_shard,
    read_listed,
    read_manifest,
)
from neurep.datum import NeuralDatum
from neurep.errors import FormatError
from neurep.modalities.registry import adapter_from_config

#: Shards kept open at once by one collection object (a random read opens one shard).
OPEN_SHARDS = 8


class _Shard:
    """One open shard: its reader (bytes in memory, checked) and its metadata columns."""

    def __init__(self, reader: ShardReader, first: int) -> None:
        self.reader = reader
        self.metadata = reader.metadata
        self.first = first  # the collection index of its first item
        self._codes: np.ndarray | None = None

    def codes(self, rows: slice | None = None) -> np.ndarray:
        """uint8 codes (n, E, *s) of ``rows`` (all by default; only their chunks are read)."""
        if rows is None:
            if self._codes is None:
                self._codes = self.reader.read_array(EMBEDDINGS, slice(None))
            return self._codes
        if self._codes is not None:
            return self._codes[rows]
        return self.reader.read_array(EMBEDDINGS, rows)


class NeuralCollection:
    """A collection folder: one shared model, every item's embedding in shards.

    ``len(collection)`` items, in the order they were added; ``collection[i]`` is item
    ``i`` as a :class:`~neurep.NeuralDatum` (its ``decode()`` gives the item back, as a
    datum's does); :meth:`record` its name and quality; :meth:`embeddings` the codes of all
    items as one array. Reading item ``i`` reads the manifest, the model file and the one
    shard that holds it, each checked against the manifest's SHA-256.

    Pickles as its path (for DataLoader workers): open files are never pickled.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._manifest = read_manifest(self.path)
        counts = [shard["items"] for shard in self._manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).tolist()
        self._model_metadata: dict[str, Any] | None = None
        self._model_reader = None
        self._model: _model.SharedModel | None = None
        self._shards: dict[int, _Shard] = {}

    # -- pickling --------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    # -- the model -------------------------------------------------------------------------
    @property
    def model_metadata(self) -> dict[str, Any]:
        """The model file's metadata (checked; treat as read-only)."""
        if self._model_metadata is None:
            entry = self._manifest["model"]
            data = read_listed(self.path, entry, "model file")
            self._model_reader = open_model(data, str(self.path / entry["file"]))
            self._model_metadata = self._model_reader.metadata
        return self._model_metadata

    @property
    def fit_record(self) -> dict[str, Any]:
        """How the shared model was fitted (steps, items, time, ...)."""
        return dict(self.model_metadata.get("fit", {}))

    @property
    def model(self) -> _model.SharedModel:
        """The shared encoder, decoder and code map (weights read and checked on first use)."""
        if self._model is None:
            metadata = self.model_metadata
            tensors = self._model_reader.read_tensors()
            self._model = _model.from_stored(metadata, tensors, self._model_reader.name)
        return self._model

    # -- items -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: Any) -> tuple[int, int]:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"collection indices are integers, not {type(index).__name__}")
        position = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= position < len(self):
            raise IndexError(f"{self.path}: item {index} of {len(self)}")
        shard = bisect.bisect_right(self._starts, position) - 1
        return shard, position - self._starts[shard]

    def _shard(self, number: int) -> _Shard:
        shard = self._shards.get(number)
        if shard is not None:
            return shard
        entry = self._manifest["shards"][number]
        name = str(self.path / entry["file"])
        reader = open_shard(read_listed(self.path, entry, "shard"), name)
        expected = self._manifest["model"]["sha256"]
        if reader.metadata["model_sha256"] != expected:
            raise FormatError(
                f"{name}: made for the model with SHA-256 {reader.metadata['model_sha256']}, "
                f"not this collection's ({expected})"
            )
        if reader.metadata["items"] != entry["items"]:
            raise FormatError(
                f"{name}: {reader.metadata['items']} items, the manifest says {entry['items']}"
            )
        spec_shape = tuple(reader._arrays[EMBEDDINGS].shape[1:])
        expected_shape = tuple(self.model_metadata["embedding"]["item_shape"])
        if spec_shape != expected_shape:
            raise FormatError(
                f"{name}: embeddings of shape {list(spec_shape)}, the model's are "
                f"{list(expected_shape)}"
            )
        if len(self._shards) >= OPEN_SHARDS:
            self._shards.pop(next(iter(self._shards)))
        shard = self._shards[number] = _Shard(reader, self._starts[number])
        return shard

    def record(self, index: int) -> dict[str, Any]:
        """Item ``index``'s name, quality (``psnr``, ``ms_ssim``), refinement steps and
        shard (its file in the folder)."""
        number, row = self._locate(index)
        metadata = self._shard(number).metadata
        return {
            "name": metadata["names"][row],
            "psnr": metadata["quality"]["psnr"][row],
            "ms_ssim": metadata["quality"]["ms_ssim"][row],
            "refine_steps": metadata.get("refine_steps", [0] * metadata["items"])[row],
            "shard": self._manifest["shards"][number]["file"],
        }

    @property
    def names(self) -> list[str]:
        """Every item's name, in order (opens every shard)."""
        return [
            name for n in range(len(self._starts) - 1) for name in self._shard(n).metadata["names"]
        ]

    def __getitem__(self, index: int) -> NeuralDatum:
        number, row = self._locate(index)
        shard = self._shard(number)
        codes = shard.codes(slice(row, row + 1))
        model = self.model
        return NeuralDatum(
            self._item_metadata(shard, row, int(index)),
            decoder=model.decoder,
            embedding=model.dequantize(codes),
        )

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]

    def _item_metadata(self, shard: _Shard, row: int, index: int) -> dict[str, Any]:
        """The metadata a datum of item ``row`` of ``shard`` carries (as a file's would)."""
        model = self.model_metadata
        configuration = dict(model["modality"]["configuration"])
        for key, values in shard.metadata.get("item_modality", {}).items():
            configuration[key] = values[row]
        modality = {"name": model["modality"]["name"], "configuration": configuration}
        item_shape = list(model["signal"]["item_shape"])
        name = str(self.path / self._manifest["shards"][self._locate(index)[0]]["file"])
        try:
            expected = adapter_from_config(modality).signal_shape()
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{name}: item {row}: bad modality description: {error}") from None
        if expected is not None and list(expected) != [1, *item_shape]:
            raise FormatError(
                f"{name}: item {row}: its modality restores a signal of shape {list(expected)}, "
                f"the model decodes {[1, *item_shape]}"
            )
        quality = shard.metadata["quality"]
        return {
            "modality": modality,
            "signal": {"shape": [1, *item_shape], "loss": model["signal"]["loss"]},
            "decoder": model["decoder"],
            "encoder": model["encoder"],
            "embedding": {"shape": [1, *model["embedding"]["item_shape"]], "dtype": "uint8"},
            "quality": {"psnr": quality["psnr"][row], "ms_ssim": quality["ms_ssim"][row]},
            "collection": {
                "path": str(self.path),
                "item": index,
                "name": shard.metadata["names"][row],
            },
        }

    # -- many items at once ----------------------------------------------------------------
    def embeddings(self, items: Any = None) -> np.ndarray:
        """Embeddings of every item (or of the indices ``items``): (N, E, *s) float32."""
        model = self.model_metadata
        shape = tuple(model["embedding"]["item_shape"])
        if items is None:
            codes = [self._shard(n).codes() for n in range(len(self._starts) - 1)]
            stacked = np.concatenate(codes) if codes else np.zeros((0, *shape), np.uint8)
        else:
            stacked = (
                np.stack([self._codes_of(i) for i in items])
                if len(items)
                else np.zeros((0, *shape), np.uint8)
            )
        return self._dequantize(stacked)

    def _codes_of(self, index: int) -> np.ndarray:
        number, row = self._locate(index)
        return self._shard(number).codes(slice(row, row + 1))[0]

    def _dequantize(self, codes: np.ndarray) -> np.ndarray:
        if self._model is not None:
            return self._model.dequantize(codes)
        embedding = self.model_metadata["embedding"]
        scale = np.asarray(embedding["scale"], np.float64)
        offset = np.asarray(embedding["offset"], np.float64)
        if scale.shape != (codes.shape[1],) or offset.shape != scale.shape:
            raise FormatError(f"{self.path}: the code map does not match the embeddings")
        view = (1, -1) + (1,) * (codes.ndim - 2)
        return codes.astype(np.float32) * scale.astype(np.float32).reshape(view) + offset.astype(
            np.float32
        ).reshape(view)

    def as_tensors(self, items: Any) -> torch.Tensor:
        """Items decoded together in one pass of the shared decoder: (n, C, *S) float32 in
        [0, 1], each as ``collection[i].as_tensor()`` gives it."""
        items = list(items)
        decoded = self.model.decode(self.embeddings(items))
        tensors = []
        for row, index in enumerate(items):
            number, position = self._locate(index)
            metadata = self._item_metadata(self._shard(number), position, int(index))
            adapter = adapter_from_config(metadata["modality"])
            tensors.append(adapter.signal_as_tensor(decoded[row : row + 1]))
        return torch.stack(tensors) if tensors else decoded

    def files(self) -> dict[str, Any]:
        """Absolute paths of the manifest, the model file and the shards."""
        return {
            "manifest": (self.path / MANIFEST).resolve(),
            "model": (self.path / self._manifest["model"]["file"]).resolve(),
            "shards": [(self.path / s["file"]).resolve() for s in self._manifest["shards"]],
        }

    def __repr__(self) -> str:
        return f"NeuralCollection({str(self.path)!r}, {len(self)} items)"
