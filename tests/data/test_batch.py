"""Batched decoding (neurep.data.batch) and decoder parameter vectors: decode_batch equals
item-by-item decoding for one size, mixed modalities and any order; parameter vectors and
their layouts; what encode_item and decode_batch refuse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _index_rows import ok_outputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.data import EncodedItem, NeuralDataset, decode_batch, encode_item, stack_or_list
from neurep.data import batch as batch_module
from neurep.datum import NeuralDatum
from neurep.errors import FormatError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The mixed pool: every layout, two image sizes, repeated architectures.
MIXED = ("image", "array", "wide_image", "voxels", "video", "array_2d", "one_frame_video")


def assert_all_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert isinstance(got, list) and len(got) == len(expected)
    for value, reference in zip(got, expected, strict=True):
        assert value.dtype == torch.float32 and value.shape == reference.shape
        torch.testing.assert_close(value, reference, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def folder_data(data_converted) -> list[NeuralDatum]:
    """The seven 32x32 images of ``data_converted``, loaded."""
    return [neurep.load(data_converted / name) for name in ok_outputs(data_converted)]


@pytest.fixture(scope="module")
def pool(data_modalities, folder_data) -> tuple[list[EncodedItem], list[torch.Tensor]]:
    """Encoded items of every layout (and a few images that share an architecture) with
    their item-by-item decodes."""
    data = [neurep.load(data_modalities[name][1]) for name in MIXED] + folder_data[:3]
    return [encode_item(d, f"item{i}") for i, d in enumerate(data)], [d.as_tensor() for d in data]


# -- decode_batch equals item-by-item decoding ------------------------------------------------
def test_images_of_one_size_decode_like_item_by_item(folder_data):
    items = [encode_item(d) for d in folder_data]
    assert len(items) == 7 and len({item.architecture for item in items}) == 1
    assert_all_close(decode_batch(items), [d.as_tensor() for d in folder_data])


def test_a_mixed_batch_decodes_like_item_by_item_in_order(data_modalities):
    data = [data_modalities[name][0] for name in MIXED]  # in memory, as fitted and saved
    loaded = [neurep.load(data_modalities[name][1]) for name in MIXED]
    mixed = data + loaded[::-1]
    got = decode_batch([encode_item(d, f"d{i}") for i, d in enumerate(mixed)])
    assert_all_close(got, [d.as_tensor() for d in mixed])
    shapes = [tuple(t.shape) for t in got[: len(MIXED)]]
    assert shapes == [(3, 16, 16), (1, 20), (3, 24, 32), (1, 8, 8, 8), (4, 3, 16, 16),
                      (1, 6, 10), (1, 3, 16, 16)]  # fmt: skip


@pytest.mark.parametrize("name", MIXED)
def test_a_single_item_decodes_like_as_tensor(data_modalities, name):
    datum = neurep.load(data_modalities[name][1])
    (got,) = decode_batch([encode_item(datum)])
    torch.testing.assert_close(got, datum.as_tensor(), atol=1e-5, rtol=0)
    (again,) = decode_batch([encode_item(datum)], device="cpu")
    assert torch.equal(again, got) and again.device.type == "cpu"


def test_an_empty_batch_decodes_to_nothing():
    assert decode_batch([]) == []
    assert stack_or_list([]) == []


def test_batches_larger_than_one_forward_are_split(folder_data, monkeypatch):
    items = [encode_item(d) for d in folder_data]
    expected = [d.as_tensor() for d in folder_data]
    # two 3x32x32 images per vmapped forward: 7 items take 4 forwards
    monkeypatch.setattr(batch_module, "MAX_BATCH_OUTPUT_ELEMENTS", 2 * 3 * 32 * 32)
    calls = []
    real = batch_module._decode_group

    def counting(group, *args):
        calls.append(len(group))
        return real(group, *args)

    monkeypatch.setattr(batch_module, "_decode_group", counting)
    assert_all_close(decode_batch(items[::-1]), expected[::-1])
    assert calls == [2, 2, 2, 1]


def test_one_forward_per_group(pool):
    items, expected = pool
    calls = []
    real = batch_module._decode_group

    def counting(group, *args):
        calls.append(len(group))
        return real(group, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_module, "_decode_group", counting)
        assert_all_close(decode_batch(items), expected)
    keys = {(i.architecture, i.embedding.shape, i.signal_shape, i.loss) for i in items}
    assert len(calls) == len(keys) < len(items) and sum(calls) == len(items)


# hypothesis: any choice and order of the pool's items (repeats too) decodes as item by item
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_subsets_and_orders_decode_like_item_by_item(pool, data):
    items, expected = pool
    chosen = data.draw(st.lists(st.integers(0, len(items) - 1), min_size=1, max_size=12))
    assert_all_close(decode_batch([items[i] for i in chosen]), [expected[i] for i in chosen])


# -- parameter vectors ------------------------------------------------------------------------
def check_layout(datum: NeuralDatum, vector: np.ndarray) -> None:
    """``vector`` (taken before the decoder was built) is the decoder's state laid end to end."""
    slots = datum.parameter_layout()
    state = datum.decoder.state_dict()
    assert vector.dtype == np.float32 and vector.ndim == 1
    assert [slot.name for slot in slots] == list(state)  # state-dict order
    offset = 0
    for slot in slots:
        assert slot.offset == offset and slot.size == math.prod(slot.shape)
        assert tuple(state[slot.name].shape) == slot.shape
        offset += slot.size
    assert len(vector) == offset == sum(slot.size for slot in slots)
    assert len(vector) == sum(p.numel() for p in datum.decoder.parameters())
    assert len(vector) == sum(t.numel() for t in state.values())
    flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for t in state.values()])
    assert np.array_equal(vector, flat.numpy())
    for slot in slots:
        part = vector[slot.offset : slot.offset + slot.size].reshape(slot.shape)
        assert np.array_equal(part, state[slot.name].numpy())


@pytest.mark.parametrize("name", ["image", "video", "voxels", "array"])
def test_a_loaded_files_vector_is_its_decoder_state(data_modalities, name):
    datum = neurep.load(data_modalities[name][1])
    vector = datum.parameters_vector()  # dequantised without building the decoder
    assert datum._decoder is None
    check_layout(datum, vector)
    assert np.array_equal(datum.parameters_vector(), vector)  # and from the built decoder


@pytest.mark.parametrize("fitted", ["image", "array"])
def test_an_in_memory_datums_vector_is_its_decoder_state(fitted):
    rng = np.random.default_rng(11)
    obj = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) if fitted == "image" else rng.random(20)
    datum = neurep.fit(obj, steps=3, progress=False)
    check_layout(datum, datum.parameters_vector())


def test_equal_decoder_descriptions_have_equal_layouts(folder_data, data_modalities):
    first, second = folder_data[0], folder_data[4]
    assert first.metadata["decoder"] == second.metadata["decoder"]
    assert first.parameter_layout() == second.parameter_layout()
    vectors = np.stack([first.parameters_vector(), second.parameters_vector()])
    assert vectors.shape == (2, len(first.parameters_vector())) and not np.array_equal(*vectors)
    in_memory = data_modalities["image"][0]
    if in_memory.metadata["decoder"] == first.metadata["decoder"]:
        assert in_memory.parameter_layout() == first.parameter_layout()


def test_a_loaded_datum_has_the_vector_of_the_datum_it_was_saved_from(tmp_path):
    rng = np.random.default_rng(5)
    for k, obj in enumerate([rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.random(20)]):
        datum = neurep.fit(obj, steps=3, progress=False)
        path = tmp_path / f"d{k}.nrep"
        datum.save(path)  # freezes the storage (quantised weights) first
        assert datum._stored is not None
        loaded = neurep.load(path)
        assert loaded.metadata["weights"]["precision"] == datum.metadata["weights"]["precision"]
        assert loaded.parameter_layout() == datum.parameter_layout()
        assert np.array_equal(loaded.parameters_vector(), datum.parameters_vector())
        assert encode_item(loaded).architecture == encode_item(datum).architecture


# -- refusals ---------------------------------------------------------------------------------
def test_decode_batch_refuses_what_is_not_an_encoded_item(folder_data):
    item = encode_item(folder_data[0])
    for bad in (folder_data[0], folder_data[0].as_tensor(), "item", None):
        with pytest.raises(TypeError, match="EncodedItem"):
            decode_batch([item, bad])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_encode_item_refuses_an_embedding_that_is_not_finite(data_modalities, bad):
    datum = data_modalities["image"][0]
    embedding = np.array(datum.embedding(), dtype=np.float32)
    embedding.reshape(-1)[3] = bad
    broken = NeuralDatum(datum.metadata, decoder=datum.decoder, embedding=embedding)
    with pytest.raises(FormatError, match="NaN or infinity"):
        encode_item(broken, "broken.nrep")
    with pytest.raises(FormatError, match=r"broken\.nrep"):
        encode_item(broken, "broken.nrep")
    with pytest.raises(FormatError, match="in memory"):
        encode_item(broken)


def test_encode_item_refuses_a_loaded_datum_whose_embedding_is_not_finite(
    data_modalities, monkeypatch
):
    datum = neurep.load(data_modalities["video"][1])
    stored = datum.embedding()
    monkeypatch.setattr(datum, "embedding", lambda items=None: np.full_like(stored, np.nan))
    with pytest.raises(FormatError, match=str(data_modalities["video"][1].name)):
        encode_item(datum)


# -- NeuralDataset.decode ---------------------------------------------------------------------
def test_dataset_decode_stacks_equal_shapes_and_lists_mixed_ones(
    data_converted, data_modalities, folder_data
):
    dataset = NeuralDataset(data_converted, output="encoded")
    batch = [dataset[i] for i in (6, 0, 3)]
    stacked = dataset.decode(batch)
    assert isinstance(stacked, torch.Tensor) and stacked.shape == (3, 3, 32, 32)
    expected = torch.stack([folder_data[i].as_tensor() for i in (6, 0, 3)])
    torch.testing.assert_close(stacked, expected, atol=1e-5, rtol=0)
    assert torch.equal(dataset.decode(batch, device="cpu"), stacked)
    paths = [data_modalities[name][1] for name in ("image", "wide_image", "video")]
    mixed_set = NeuralDataset(paths, output="encoded")
    mixed = mixed_set.decode([mixed_set[i] for i in range(3)])
    assert isinstance(mixed, list)
    assert [tuple(t.shape) for t in mixed] == [(3, 16, 16), (3, 24, 32), (4, 3, 16, 16)]
    assert_all_close(mixed, [neurep.load(p).as_tensor() for p in paths])
    single = mixed_set.decode([mixed_set[1]])
    assert isinstance(single, torch.Tensor) and single.shape == (1, 3, 24, 32)
