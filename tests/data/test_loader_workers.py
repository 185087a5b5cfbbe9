"""NeuralDataset in torch DataLoaders with worker processes (fork, and spawn over a pack):
every item exactly once per epoch, DistributedSampler shards, one torch thread per worker."""

from __future__ import annotations

import collections
import os

import pytest
import torch
from _index_rows import ok_outputs
from torch.utils.data import DataLoader, DistributedSampler

import neurep
from neurep.data import NeuralDataset
from neurep.errors import FormatError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ITEMS = 7  # len(data_converted)


@pytest.fixture(scope="module")
def expected(data_converted) -> dict[str, list[torch.Tensor]]:
    """Each item's decoded tensor and embedding, item by item, in dataset order."""
    data = [neurep.load(data_converted / name) for name in ok_outputs(data_converted)]
    assert len(data) == ITEMS
    return {
        "decoded": [d.as_tensor() for d in data],
        "embedding": [torch.from_numpy(d.embedding()[0]) for d in data],
    }


def identify(value: torch.Tensor, references: list[torch.Tensor], exact: bool = True) -> int:
    """The one position whose reference ``value`` is (exactly, or within float rounding)."""
    if exact:
        found = [k for k, ref in enumerate(references) if torch.equal(value, ref)]
    else:
        found = [k for k, ref in enumerate(references) if torch.allclose(value, ref, atol=1e-5)]
    assert len(found) == 1, f"{len(found)} items match a loaded value"
    return found[0]


def run_epochs(loader, references, shape, epochs=2, exact=True) -> list[list[int]]:
    """The item positions each epoch yielded, checking batch shapes on the way."""
    orders = []
    for _ in range(epochs):
        order = []
        sizes = []
        for batch in loader:
            assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
            assert tuple(batch.shape[1:]) == shape
            sizes.append(len(batch))
            order.extend(identify(value, references, exact) for value in batch)
        assert sizes == [3, 3, 1]
        assert collections.Counter(order) == collections.Counter(range(ITEMS))  # once each
        orders.append(order)
    return orders


@pytest.mark.parametrize("source", ["folder", "pack"])
def test_forked_workers_yield_every_item_once_per_epoch(
    data_converted, data_pack, expected, source
):
    dataset = NeuralDataset(data_converted if source == "folder" else data_pack)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=True, persistent_workers=True)
    torch.manual_seed(0)
    orders = run_epochs(loader, expected["decoded"], (3, 32, 32), epochs=3)
    assert len({tuple(order) for order in orders}) > 1  # shuffled anew each epoch


def test_encoded_items_decode_in_the_workers(data_pack, expected):
    dataset = NeuralDataset(data_pack, output="encoded")
    loader = DataLoader(
        dataset,
        batch_size=3,
        num_workers=2,
        shuffle=True,
        persistent_workers=True,
        collate_fn=dataset.decode,
    )
    run_epochs(loader, expected["decoded"], (3, 32, 32), exact=False)


def test_encoded_batches_decode_in_the_main_process(data_converted, expected):
    dataset = NeuralDataset(data_converted, output="encoded")
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=True, collate_fn=list)
    seen = []
    for batch in loader:
        assert isinstance(batch, list) and all(type(i).__name__ == "EncodedItem" for i in batch)
        decoded = dataset.decode(batch, device="cpu")
        assert decoded.shape == (len(batch), 3, 32, 32)
        seen.extend(identify(value, expected["decoded"], exact=False) for value in decoded)
        assert [item.name for item in batch] == [dataset.names[k] for k in seen[-len(batch) :]]
    assert sorted(seen) == list(range(ITEMS))


def test_embeddings_load_in_workers(data_converted, expected):
    dataset = NeuralDataset(data_converted, output="embedding")
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=True, persistent_workers=True)
    run_epochs(loader, expected["embedding"], tuple(expected["embedding"][0].shape))


def test_spawned_workers_read_a_pack(data_pack, expected):
    dataset = NeuralDataset(data_pack)
    dataset[0]  # the pack's h5py handle is open in this process: it must not travel
    assert dataset.items._file is not None
    loader = DataLoader(
        dataset, batch_size=3, num_workers=2, shuffle=True, multiprocessing_context="spawn"
    )
    run_epochs(loader, expected["decoded"], (3, 32, 32), epochs=1)


@pytest.mark.parametrize("output", ["decoded", "encoded"])
def test_a_hostile_item_read_in_a_worker_raises_format_error_naming_it(data_hostile_pack, output):
    dataset = NeuralDataset(data_hostile_pack, output=output)
    position = dataset.names.index("p3.nrep")
    collate = dataset.decode if output == "encoded" else None
    loader = DataLoader(
        torch.utils.data.Subset(dataset, [0, position]),
        batch_size=1,
        num_workers=2,
        collate_fn=collate,
    )
    batches = iter(loader)
    try:
        with pytest.raises(FormatError) as caught:  # re-raised here with the worker's message
            for _ in batches:
                pass
    finally:
        # stop the workers now: left to the garbage collector, torch's shutdown of workers
        # after an error waits 5 s on each (and a later fork may inherit the iterator)
        batches._shutdown_workers()
        del batches
    assert f"{data_hostile_pack}: item 'p3.nrep': " in str(caught.value)


# -- distributed shards -----------------------------------------------------------------------
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_shards_cover_every_item(data_converted, expected, drop_last):
    dataset = NeuralDataset(data_converted)
    for epoch in (0, 1):
        shards = []
        for rank in (0, 1):
            sampler = DistributedSampler(
                dataset, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=drop_last
            )
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        counts = collections.Counter(shards[0] + shards[1])
        if drop_last:  # 7 items: 3 each, disjoint, one item left out
            assert len(shards[0]) == len(shards[1]) == 3 and not set(shards[0]) & set(shards[1])
            assert len(counts) == 6 and set(counts) <= set(range(ITEMS))
        else:  # 7 items: 4 each, the padding repeats one item once
            assert len(shards[0]) == len(shards[1]) == 4
            assert set(counts) == set(range(ITEMS))
            assert sorted(counts.values()) == [1] * 6 + [2]
        for rank, indices in enumerate(shards):
            sampler = DistributedSampler(
                dataset, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=drop_last
            )
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2)
            got = [identify(value, expected["decoded"]) for batch in loader for value in batch]
            assert got == indices


# -- threads ----------------------------------------------------------------------------------
def with_threads(value: torch.Tensor) -> dict:
    """The transform of the thread test: the value, and the torch threads and process it was
    decoded in."""
    return {"value": value, "threads": torch.get_num_threads(), "pid": os.getpid()}


def test_each_worker_decodes_on_one_torch_thread(data_converted, data_pack, expected):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # so that the workers' one thread is not this process's count
    try:
        for source in (data_converted, data_pack):
            dataset = NeuralDataset(source, transform=with_threads)
            loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=True)
            pids, seen = set(), []
            for batch in loader:
                assert batch["threads"].tolist() == [1] * len(batch["threads"])
                pids.update(batch["pid"].tolist())
                seen.extend(identify(v, expected["decoded"]) for v in batch["value"])
            assert sorted(seen) == list(range(ITEMS))
            assert os.getpid() not in pids and 1 <= len(pids) <= 2
            # decoded in this process (num_workers=0): on this process's threads
            assert dataset[0]["threads"] == 2 and dataset[0]["pid"] == os.getpid()
    finally:
        torch.set_num_threads(threads)
