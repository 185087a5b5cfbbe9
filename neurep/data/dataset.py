""":class:`NeuralDataset`: neural data as a map-style ``torch.utils.data.Dataset``.

It holds paths and the items' names and records, never an open file: it pickles small
into ``DataLoader`` workers, and each worker opens what it reads (a pack's HDF5 handle is
opened lazily in each worker process, see :class:`~neurep.data.packs.PackReader`).

Threads: PyTorch runs each ``DataLoader`` worker on one intra-op thread, so
``num_workers=N`` decodes on N cores without oversubscription; with ``num_workers=0`` the
decode runs in the main process on its torch threads (``torch.set_num_threads``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from neurep.data._sources import CollectionItems, open_items
from neurep.data.batch import EncodedItem, decode_batch, encode_item, stack_or_list
from neurep.errors import InputError

__all__ = ["OUTPUTS", "NeuralDataset"]

#: What an item can be (see :class:`NeuralDataset`).
OUTPUTS = ("decoded", "embedding", "datum", "encoded")


class NeuralDataset(torch.utils.data.Dataset):
    """Neural data as a map-style dataset, for every modality.

    Args:
        source: a ``neurep convert`` output folder (its ``index.jsonl``'s ``ok`` items), a
            collection (:func:`neurep.fit_collection`: its folder or the
            :class:`~neurep.collection.NeuralCollection`), a pack made by ``neurep pack``
            (``.h5``), or a list of ``.nrep`` paths.
        output: what ``dataset[i]`` is:

            - ``"decoded"``: the datum decoded as a float32 tensor
              (:meth:`NeuralDatum.as_tensor <neurep.datum.NeuralDatum.as_tensor>`): images
              ``C x H x W`` and video ``T x C x H x W`` in [0, 1], shapes' occupancy
              probabilities ``1 x D x H x W``, arrays ``1 x *S`` in their own units;
            - ``"embedding"``: the stored embedding as float32, ``E x *s`` (video
              ``T x E x *s``), for models that train on the codes;
            - ``"datum"``: the :class:`~neurep.datum.NeuralDatum` (opened, weights unread;
              batch them with ``collate_fn=list``);
            - ``"encoded"``: an :class:`~neurep.data.batch.EncodedItem` (weights and
              embedding read and checked, not decoded), for batched decoding by
              :meth:`decode`, in the workers (``collate_fn=dataset.decode``) or in the
              main process on the training device. Not for a collection: take
              ``"embedding"`` items and decode batches with
              :meth:`NeuralCollection.as_tensors <neurep.collection.NeuralCollection.as_tensors>`
              (one pass of the shared decoder).
        transform: applied to each item's value (for ``"encoded"``: to each decoded tensor,
            by :meth:`decode`).

    ``dataset.record(i)`` gives item i's index fields (``source``, ``quality``, ``bytes``,
    ``modality``...; for a list of paths, read from the file's metadata) and
    ``dataset.names`` the items' names (outputs relative to the folder, or the paths). For
    a collection, records are :meth:`NeuralCollection.record
    <neurep.collection.NeuralCollection.record>`'s (``name``, ``psnr``, ``ms_ssim``,
    ``refine_steps``, ``shard``) and names its item names; the dataset then holds the
    folder's path only, and each worker process opens the collection itself.
    """

    def __init__(
        self,
        source: Any,
        output: str = "decoded",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        self.output = output
        self.transform = transform
        self.items = open_items(source)
        if output == "encoded" and isinstance(self.items, CollectionItems):
            raise InputError(
                f"{self.items.path}: a collection's items share one decoder, so they have no "
                'encoded form; use output="embedding" and decode batches of them with '
                "NeuralCollection.as_tensors(indices)"
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return list(self.items.names)

    def record(self, index: int) -> dict[str, Any]:
        """Item ``index``'s fields from the index (a copy)."""
        return self.items.record(self._position(index))

    def _position(self, index: int) -> int:
        if isinstance(index, torch.Tensor) and index.dim() == 0 and not index.is_floating_point():
            index = int(index)  # a sampler's tensor integer
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"dataset indices are integers, not {type(index).__name__}")
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} is out of range for {len(self)} items")
        return index % len(self)

    def __getitem__(self, index: int) -> Any:
        position = self._position(index)
        if self.output == "embedding":  # read and checked; nothing is decoded
            value = self.items.embedding(position)
            return value if self.transform is None else self.transform(value)
        datum = self.items.load(position)
        if self.output == "datum":
            value = datum
        elif self.output == "encoded":
            return encode_item(datum, self.items.names[position])
        else:
            value = datum.as_tensor()
        return value if self.transform is None else self.transform(value)

    def decode(
        self, batch: Sequence[EncodedItem], device: str | torch.device | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """Decode a batch of ``"encoded"`` items together (:func:`~neurep.data.decode_batch`),
        apply the transform, and stack them when they share a shape (else a list).

        Use it as a ``DataLoader``'s ``collate_fn`` to decode in the workers, or call it
        on a batch collated with ``collate_fn=list`` to decode on ``device`` (a GPU).
        """
        decoded = decode_batch(batch, device=device)
        if self.transform is not None:
            decoded = [self.transform(value) for value in decoded]
        return stack_or_list(decoded)

    def __repr__(self) -> str:
        return f"NeuralDataset({len(self)} items, output={self.output!r})"
