"""Neural data in ML pipelines: a PyTorch dataset, HDF5 packs, batched decoding.

    >>> from torch.utils.data import DataLoader
    >>> from neurep.data import NeuralDataset
    >>> dataset = NeuralDataset("converted/")                         # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=32, num_workers=2)    # doctest: +SKIP

- :class:`NeuralDataset` (:mod:`neurep.data.dataset`): items of a converted folder, a pack
  or a list of ``.nrep`` paths, decoded, as embeddings, as data, or encoded for batches;
- :func:`decode_batch` (:mod:`neurep.data.batch`): one vmapped forward for many items;
- :func:`pack`, :func:`unpack`, :class:`PackReader` (:mod:`neurep.data.packs`): a converted
  folder as one HDF5 file and back.
"""

from __future__ import annotations

from neurep.data.batch import EncodedItem, decode_batch, encode_item, stack_or_list
from neurep.data.dataset import OUTPUTS, NeuralDataset
from neurep.data.packs import PackReader, is_pack, pack, unpack

__all__ = [
    "OUTPUTS",
    "EncodedItem",
    "NeuralDataset",
    "PackReader",
    "decode_batch",
    "encode_item",
    "is_pack",
    "pack",
    "stack_or_list",
    "unpack",
]
