"""NeuralDataset (neurep.data.dataset) and its sources (neurep.data._sources): items of a
converted folder, a pack or a list of paths, in every output mode and every modality's
layout; index rows that are not items; damaged and hostile items; ``neurep.load`` of a
pack's items; datasets that pickle small."""

from __future__ import annotations

import copy
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _index_rows import ok_rows

import neurep
from neurep.data import OUTPUTS, EncodedItem, NeuralDataset
from neurep.datum import NeuralDatum
from neurep.errors import FormatError, InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: conftest.DATA_ERROR_ROW: the errored index row of ``data_converted``
DATA_ERROR_ROW = {"output": "failed.nrep", "source": "failed.png", "status": "error"}


def check_value(output: str, value, path: Path, name: str | None = None) -> None:
    """``value`` is what ``dataset[i]`` must be, for output mode ``output``, for ``path``."""
    reference = neurep.load(path)
    if output == "decoded":
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float32
        assert value.shape == (3, 32, 32)
        assert value.min() >= 0.0 and value.max() <= 1.0
        assert torch.equal(value, reference.as_tensor())
    elif output == "embedding":
        expected = torch.from_numpy(reference.embedding()[0])
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float32
        assert value.shape == expected.shape == tuple(reference.metadata["embedding"]["shape"][1:])
        assert torch.equal(value, expected)
    elif output == "datum":
        assert isinstance(value, NeuralDatum)
        assert value.metadata == reference.metadata
        assert torch.equal(value.as_tensor(), reference.as_tensor())
    else:
        assert isinstance(value, EncodedItem)
        if name is not None:
            assert value.name == name
        assert np.array_equal(value.parameters, reference.parameters_vector())
        assert np.array_equal(value.embedding, reference.embedding())
        assert value.signal_shape == tuple(reference.metadata["signal"]["shape"])
        assert value.adapter.to_config() == reference.metadata["modality"]


@pytest.fixture(scope="module")
def expected(data_converted) -> list[torch.Tensor]:
    """The decoded tensor of each ok item of ``data_converted``, item by item, in order."""
    return [
        neurep.load(data_converted / row["output"]).as_tensor() for row in ok_rows(data_converted)
    ]


# -- output modes -----------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["folder", "pack"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_each_output_mode(data_converted, data_pack, output, source):
    rows = ok_rows(data_converted)
    dataset = NeuralDataset(data_converted if source == "folder" else data_pack, output=output)
    assert len(dataset) == len(rows) == 7
    assert dataset.names == [row["output"] for row in rows]
    assert DATA_ERROR_ROW["output"] not in dataset.names and "sub/p6.nrep" in dataset.names
    assert (
        dataset.output == output and repr(dataset) == f"NeuralDataset(7 items, output={output!r})"
    )
    paths = [data_converted / row["output"] for row in rows]
    for i, path in enumerate(paths):
        check_value(output, dataset[i], path, rows[i]["output"])
    check_value(output, dataset[-1], paths[-1], rows[-1]["output"])
    check_value(output, dataset[-7], paths[0], rows[0]["output"])
    check_value(output, dataset[np.int64(2)], paths[2], rows[2]["output"])
    check_value(output, dataset[np.uint8(3)], paths[3], rows[3]["output"])
    check_value(output, dataset[torch.tensor(4)], paths[4], rows[4]["output"])
    for bad in (7, 8, -8, np.int64(7), 10**9):
        with pytest.raises(IndexError, match="out of range"):
            dataset[bad]
    with pytest.raises(IndexError):
        dataset.record(7)


def test_indices_that_are_not_integers_are_refused(data_converted, data_pack):
    # a float or a string is not silently truncated or parsed into an item number (as the
    # pack reader, PackReader, refuses them)
    for source in (data_converted, data_pack):
        dataset = NeuralDataset(source)
        for bad in (1.5, 2.0, "3", True, np.float64(1.0)):
            with pytest.raises(TypeError):
                dataset[bad]


def test_decoded_items_are_the_files_as_tensors_and_match_their_decode(data_converted, expected):
    dataset = NeuralDataset(data_converted)
    for i, name in enumerate(dataset.names):
        datum = neurep.load(data_converted / name)
        tensor = dataset[i]
        assert torch.equal(tensor, expected[i])
        pixels = datum.decode()
        assert pixels.dtype == np.uint8 and pixels.shape == (32, 32, 3)
        levels = (tensor * 255).round().numpy()
        assert np.abs(levels - pixels.transpose(2, 0, 1).astype(np.float64)).max() <= 1
    # the items differ from each other (what the loader tests rely on to tell them apart)
    assert all(not torch.equal(a, b) for k, a in enumerate(expected) for b in expected[k + 1 :])
    codes = [torch.from_numpy(neurep.load(data_converted / n).embedding()) for n in dataset.names]
    assert all(code.abs().max() > 0 for code in codes)
    assert all(not torch.equal(a, b) for k, a in enumerate(codes) for b in codes[k + 1 :])


@pytest.mark.parametrize("output", ["decoded", "embedding", "datum"])
def test_transform_is_applied_to_each_value(data_converted, output):
    plain = NeuralDataset(data_converted, output=output)
    marked = NeuralDataset(data_converted, output=output, transform=lambda value: ("t", value))
    for i in (0, 3, -1):
        tag, value = marked[i]
        assert tag == "t"
        if output == "datum":
            assert value.metadata == plain[i].metadata
        else:
            assert torch.equal(value, plain[i])


def test_transform_of_encoded_items_is_applied_by_decode(data_converted, expected):
    dataset = NeuralDataset(data_converted, output="encoded", transform=lambda t: 1.0 - t)
    item = dataset[1]
    assert isinstance(item, EncodedItem)  # the transform is not applied to the item itself
    decoded = dataset.decode([item, dataset[0]])
    assert decoded.shape == (2, 3, 32, 32)
    torch.testing.assert_close(decoded[0], 1.0 - expected[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(decoded[1], 1.0 - expected[0], atol=1e-5, rtol=0)


# -- layouts of every modality ----------------------------------------------------------------
LAYOUTS = {
    "image": (3, 16, 16),
    "wide_image": (3, 24, 32),
    "video": (4, 3, 16, 16),
    "one_frame_video": (1, 3, 16, 16),
    "voxels": (1, 8, 8, 8),
    "array": (1, 20),
    "array_2d": (1, 6, 10),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_modality_has_its_documented_layout(data_modalities, name):
    datum, path, original = data_modalities[name]
    loaded = neurep.load(path)
    tensor = loaded.as_tensor()
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == LAYOUTS[name]
    assert torch.equal(tensor, datum.as_tensor())  # saved and frozen: decodes like the file
    decoded = loaded.decode()
    if name in ("image", "wide_image", "video", "one_frame_video"):
        assert tensor.min() >= 0.0 and tensor.max() <= 1.0
        assert decoded.dtype == np.uint8 and decoded.shape == original.shape
        channels_first = np.moveaxis(decoded, -1, -3).astype(np.float64)
        assert np.abs((tensor * 255).round().numpy() - channels_first).max() <= 1
    elif name == "voxels":
        assert tensor.min() >= 0.0 and tensor.max() <= 1.0  # occupancy probabilities
        assert decoded.dtype == bool and decoded.shape == original.shape
        assert np.array_equal(tensor[0].numpy() >= 0.5, decoded)
    else:  # arrays: in their own units, not in [0, 1]
        assert decoded.shape == original.shape
        low, high = loaded.metadata["modality"]["configuration"]["value_range"]
        assert low < 0.5 or high > 1.5  # the test data are outside [0, 1]
        assert low - 1e-6 <= tensor.min() and tensor.max() <= high + 1e-6
        scale = high - low
        np.testing.assert_allclose(tensor[0].numpy(), decoded, rtol=0, atol=1e-5 * scale)
    # the dataset gives the same tensor, and embeddings keep the video's frame axis
    dataset = NeuralDataset([path])
    assert torch.equal(dataset[0], tensor)
    embedding = NeuralDataset([path], output="embedding")[0]
    stored = loaded.embedding()
    if name in ("video", "one_frame_video"):
        assert embedding.shape == stored.shape and embedding.shape[0] == LAYOUTS[name][0]
        assert torch.equal(embedding, torch.from_numpy(stored))
    else:
        assert embedding.shape == stored.shape[1:]
        assert torch.equal(embedding, torch.from_numpy(stored[0]))


# -- which rows are items ---------------------------------------------------------------------
def test_error_rows_and_deleted_files_are_not_items(data_converted, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(data_converted, folder)
    (folder / "p2.nrep").unlink()
    rows = [row for row in ok_rows(folder) if row["output"] != "p2.nrep"]
    dataset = NeuralDataset(folder)
    assert dataset.names == [row["output"] for row in rows] and len(dataset) == 6
    assert "p2.nrep" not in dataset.names and DATA_ERROR_ROW["output"] not in dataset.names
    assert [dataset.record(i) for i in range(len(dataset))] == rows
    for i, row in enumerate(rows):
        assert torch.equal(dataset[i], neurep.load(folder / row["output"]).as_tensor())


def test_a_later_ok_row_replaces_the_record_but_not_the_position(data_converted, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(data_converted, folder)
    first = ok_rows(folder)
    again = dict(first[1], quality={"psnr": 99.0, "ms_ssim": 1.0, "lossless": False})
    with open(folder / "index.jsonl", "a", encoding="utf-8") as index:
        index.write(json.dumps(again) + "\n")
    dataset = NeuralDataset(folder)
    assert dataset.names == [row["output"] for row in first]
    assert dataset.record(1)["quality"]["psnr"] == 99.0
    assert dataset.record(0) == first[0]


def test_a_folder_without_index_gives_its_nrep_files_sorted(data_converted, tmp_path):
    folder = tmp_path / "plain"
    (folder / "b").mkdir(parents=True)
    shutil.copyfile(data_converted / "p0.nrep", folder / "d.nrep")
    shutil.copyfile(data_converted / "p1.nrep", folder / "b" / "c.nrep")
    shutil.copyfile(data_converted / "p2.nrep", folder / "a.nrep")
    (folder / "notes.txt").write_text("not an item")
    dataset = NeuralDataset(folder)
    assert dataset.names == ["a.nrep", "b/c.nrep", "d.nrep"]
    assert [dataset.record(i) for i in range(3)] == [{}, {}, {}]
    for i, source in enumerate(("p2.nrep", "p1.nrep", "p0.nrep")):
        assert torch.equal(dataset[i], neurep.load(data_converted / source).as_tensor())


def test_a_list_of_paths_reads_records_from_the_metadata(data_converted, data_modalities):
    paths = [
        data_converted / "sub/p6.nrep",
        data_modalities["array"][1],
        data_converted / "p0.nrep",
    ]
    dataset = NeuralDataset(paths)
    assert dataset.names == [str(p) for p in paths] and len(dataset) == 3
    for i, path in enumerate(paths):
        metadata = neurep.load(path).metadata
        record = dataset.record(i)
        assert record["output"] == str(path) and record["status"] == "ok"
        assert record["source"] == metadata["modality"]["configuration"].get("source")
        assert record["modality"] == metadata["modality"]["name"]
        assert record["quality"] == metadata["quality"] and record["quality"]
        assert record["bytes"] == path.stat().st_size
        assert torch.equal(dataset[i], neurep.load(path).as_tensor())
    assert dataset.record(0)["source"] == "p6.png" and dataset.record(1)["modality"] == "array"
    assert dataset.record(-1) == dataset.record(2)
    # one .nrep path (str or Path) is a dataset of one item
    for one in (paths[2], str(paths[2])):
        single = NeuralDataset(one)
        assert len(single) == 1 and torch.equal(single[0], dataset[2])


def test_a_pack_gives_the_items_of_its_folder(data_converted, data_pack, expected):
    folder, packed = NeuralDataset(data_converted), NeuralDataset(data_pack)
    assert packed.names == folder.names
    assert [packed.record(i) for i in range(7)] == [folder.record(i) for i in range(7)]
    assert [packed.record(i) for i in range(7)] == ok_rows(data_converted)
    for i in range(len(folder)):
        assert torch.equal(packed[i], expected[i])
    embeddings = NeuralDataset(data_pack, output="embedding")
    assert torch.equal(embeddings[-2], NeuralDataset(data_converted, output="embedding")[-2])


@pytest.mark.parametrize("kind", ["folder", "pack", "paths"])
def test_record_is_a_copy(data_converted, data_pack, kind):
    source = {
        "folder": data_converted,
        "pack": data_pack,
        "paths": [data_converted / "p0.nrep", data_converted / "p1.nrep"],
    }[kind]
    dataset = NeuralDataset(source)
    before = copy.deepcopy(dataset.record(0))  # (a shallow copy would change with it)
    assert before["source"] and before["quality"]["psnr"] > 0
    if kind != "paths":
        assert before["source"].endswith("p0.png") and before["output"] == "p0.nrep"
    changed = dataset.record(0)
    changed["source"] = "changed"
    changed["quality"]["psnr"] = -1.0
    changed["quality"]["extra"] = True
    changed.clear()
    assert dataset.record(0) == before


# -- errors -----------------------------------------------------------------------------------
def test_bad_arguments_are_refused(data_converted, tmp_path):
    with pytest.raises(ValueError, match="output must be one of"):
        NeuralDataset(data_converted, output="pixels")
    with pytest.raises(InputError, match="no such"):
        NeuralDataset(tmp_path / "missing")
    with pytest.raises(InputError, match="no such"):
        NeuralDataset([data_converted / "p0.nrep", tmp_path / "missing.nrep"])
    with pytest.raises(InputError, match="empty list"):
        NeuralDataset([])
    with pytest.raises(TypeError):
        NeuralDataset(42)
    (tmp_path / "notes.txt").write_text("neither a folder nor a pack")
    with pytest.raises(InputError):
        NeuralDataset(tmp_path / "notes.txt")


def test_a_folder_without_ok_items_is_refused(data_converted, tmp_path):
    only_errors = tmp_path / "only_errors"
    only_errors.mkdir()
    (only_errors / "index.jsonl").write_text(json.dumps(DATA_ERROR_ROW) + "\n")
    with pytest.raises(InputError, match="no converted items"):
        NeuralDataset(only_errors)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no converted items"):
        NeuralDataset(empty)
    all_deleted = tmp_path / "all_deleted"
    shutil.copytree(data_converted, all_deleted)
    for path in all_deleted.rglob("*.nrep"):
        path.unlink()
    with pytest.raises(InputError, match="no converted items"):
        NeuralDataset(all_deleted)


#: conftest.DATA_HOSTILE: the hostile members of ``data_hostile_pack``
HOSTILE = ("p1.nrep", "p3.nrep", "p5.nrep")


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_hostile_pack_member_raises_format_error_naming_it(data_hostile_pack, output):
    dataset = NeuralDataset(data_hostile_pack, output=output)
    for name in HOSTILE:
        position = dataset.names.index(name)
        for index in (position, position - len(dataset), np.int32(position)):
            with pytest.raises(FormatError) as caught:
                dataset[index]
            assert str(caught.value).startswith(f"{data_hostile_pack}: item {name!r}: ")
    for name in ("p0.nrep", "sub/p6.nrep"):  # the others still read
        assert dataset[dataset.names.index(name)] is not None


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_damaged_file_in_a_folder_raises_format_error_naming_it(data_converted, tmp_path, output):
    folder = tmp_path / "folder"
    shutil.copytree(data_converted, folder)
    (folder / "p1.nrep").write_bytes(np.random.default_rng(3).bytes(3000))
    truncated = (data_converted / "p4.nrep").read_bytes()
    (folder / "p4.nrep").write_bytes(truncated[: len(truncated) // 2])
    dataset = NeuralDataset(folder, output=output)
    for name in ("p1.nrep", "p4.nrep"):
        with pytest.raises(FormatError, match=re.escape(str(folder / name))):
            dataset[dataset.names.index(name)]
    check_value(output, dataset[0], folder / "p0.nrep", "p0.nrep")


# -- neurep.load of a pack's items ------------------------------------------------------------
def test_load_picks_a_pack_item_by_position_or_name(data_converted, data_pack):
    names = NeuralDataset(data_converted).names
    for item, name in [(0, names[0]), (-1, names[-1]), ("sub/p6.nrep", "sub/p6.nrep"),
                       ("p2", "p2.nrep"), (np.int64(3), names[3])]:  # fmt: skip
        original = neurep.load(data_converted / name)
        got = neurep.load(data_pack, item)
        assert got.metadata == original.metadata
        assert torch.equal(got.as_tensor(), original.as_tensor())
        assert np.array_equal(got.decode(), original.decode())
    with pytest.raises(TypeError, match="is a pack"):
        neurep.load(data_pack)
    with pytest.raises(TypeError, match="takes no item"):
        neurep.load(data_converted / "p0.nrep", 0)
    with pytest.raises(KeyError):
        neurep.load(data_pack, "missing")
    with pytest.raises(IndexError):
        neurep.load(data_pack, 7)


# -- pickling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["folder", "pack", "paths"])
@pytest.mark.parametrize("output", ["decoded", "encoded"])
def test_a_dataset_pickles_small_without_an_open_handle(
    data_converted, data_pack, expected, kind, output
):
    source = {
        "folder": data_converted,
        "pack": data_pack,
        "paths": [data_converted / row["output"] for row in ok_rows(data_converted)],
    }[kind]
    dataset = NeuralDataset(source, output=output)
    first = dataset[0]
    dataset[5]  # items were read: a pack has its h5py handle open now
    if kind == "pack":
        assert dataset.items._file is not None
    blob = pickle.dumps(dataset)
    assert len(blob) < 2000 + 1500 * len(dataset)
    assert b"h5py" not in blob
    unpickled = pickle.loads(blob)
    assert unpickled.names == dataset.names and unpickled.output == output
    if kind == "pack":
        assert unpickled.items._file is None
    for i in (6, 0):
        value = unpickled[i]
        if output == "decoded":
            assert torch.equal(value, expected[i])
        else:
            assert np.array_equal(value.parameters, dataset[i].parameters)
    if output == "decoded":
        assert torch.equal(dataset[0], first)  # the original still reads
    blob_again = pickle.dumps(unpickled)
    assert len(blob_again) < 2000 + 1500 * len(dataset)
