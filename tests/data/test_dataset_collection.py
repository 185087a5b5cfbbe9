"""NeuralDataset over a collection (neurep.fit_collection): decoded items, embeddings, data,
records and names; DataLoader workers see every item once per epoch; it pickles small."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import neurep
from neurep.data import NeuralDataset
from neurep.datum import NeuralDatum
from neurep.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ITEMS = 12


@pytest.fixture(scope="module")
def collection_folder(tmp_path_factory):
    """A collection of 12 random 16x16 RGB images (one epoch, E=4: 4 x 2 x 2 codes), in
    shards of 5 items."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(11)
        images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(ITEMS)]
        folder = tmp_path_factory.mktemp("data_collection") / "col"
        neurep.fit_collection(
            images,
            folder,
            names=[f"img/{k:02d}" for k in range(ITEMS)],
            embedding_channels=4,
            epochs=1,
            shard_items=5,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return folder


def identify(value, references):
    found = [k for k, ref in enumerate(references) if torch.equal(value, ref)]
    assert len(found) == 1, f"{len(found)} items match a loaded value"
    return found[0]


def run_epochs(loader, references, shape, epochs=2):
    for _ in range(epochs):
        order, sizes = [], []
        for batch in loader:
            assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
            assert tuple(batch.shape[1:]) == shape
            sizes.append(len(batch))
            order.extend(identify(value, references) for value in batch)
        assert sizes == [4, 4, 4]
        assert collections.Counter(order) == collections.Counter(range(ITEMS))  # once each


def test_decoded_items_in_workers_once_per_epoch(collection_folder):
    collection = neurep.load(collection_folder)
    references = [collection[k].as_tensor() for k in range(ITEMS)]
    dataset = NeuralDataset(collection_folder)
    assert len(dataset) == ITEMS
    assert torch.equal(dataset[3], references[3])
    assert dataset.names == [f"img/{k:02d}" for k in range(ITEMS)]
    record = dataset.record(7)
    assert record == collection.record(7)
    assert record["name"] == "img/07" and record["shard"] == "shards/000001.nreps"
    assert set(record) == {"name", "psnr", "ms_ssim", "refine_steps", "shard"}
    assert len(pickle.dumps(dataset)) < 1000  # the path, not the collection
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, persistent_workers=True)
    torch.manual_seed(0)
    run_epochs(loader, references, (3, 16, 16))


def test_embeddings_in_workers_equal_the_collections(collection_folder):
    collection = neurep.load(collection_folder)
    rows = [torch.from_numpy(row) for row in collection.embeddings()]
    dataset = NeuralDataset(collection, output="embedding")  # the object works too
    assert len(pickle.dumps(dataset)) < 1000
    assert torch.equal(dataset[-1], rows[-1]) and dataset[0].shape == (4, 2, 2)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, persistent_workers=True)
    run_epochs(loader, rows, (4, 2, 2))


def test_datum_output_and_encoded_refused(collection_folder):
    dataset = NeuralDataset(collection_folder, output="datum")
    datum = dataset[5]
    assert isinstance(datum, NeuralDatum)
    assert torch.equal(datum.as_tensor(), neurep.load(collection_folder)[5].as_tensor())
    with pytest.raises(InputError, match='output="embedding"'):
        NeuralDataset(collection_folder, output="encoded")
