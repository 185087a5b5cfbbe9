"""Collections written by fit_collection read back item by item and all at once; append
adds items without touching what is there; a random read opens only one shard."""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from _threads import one_thread
from collection_helpers import SHARD_ITEMS, random_image, sha256_of

import neurep
from neurep.collection import NeuralCollection
from neurep.collection import collection as collection_module


def own_psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    error = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255.0**2 / error)


# -- round trip ------------------------------------------------------------------------------
def test_every_item_decodes_to_its_shape_and_recorded_psnr(built):
    col = neurep.load(built.folder)
    assert isinstance(col, NeuralCollection)
    assert len(col) == len(built.originals) == 30
    assert col.names == list(built.names)
    for i, original in enumerate(built.originals):
        decoded = np.asarray(col[i].decode())
        assert decoded.shape == original.shape and decoded.dtype == original.dtype
        record = col.record(i)
        assert record["name"] == built.names[i]
        assert record["shard"] == f"shards/{i // SHARD_ITEMS:06d}.nreps"
        assert record["refine_steps"] == 0
        assert record["psnr"] == pytest.approx(own_psnr(original, decoded), abs=1e-3)
    # items of different inputs decode differently (the codes are not all the same)
    assert not np.array_equal(col[0].decode(), col[29].decode())


def test_shards_and_negative_indices(built):
    col = NeuralCollection(built.folder)
    manifest = json.loads((built.folder / "collection.json").read_text())
    assert [s["items"] for s in manifest["shards"]] == [8, 8, 8, 6]
    files = col.files()
    assert [p.name for p in files["shards"]] == [f"{n:06d}.nreps" for n in range(4)]
    assert files["model"].name == "model.nrepm" and files["manifest"].name == "collection.json"
    np.testing.assert_array_equal(col[-1].decode(), col[29].decode())
    for bad in (30, -31):
        with pytest.raises(IndexError):
            col[bad]
    with pytest.raises(TypeError):
        col["item000001"]


def test_load_with_an_item_gives_that_datum(built):
    datum = neurep.load(built.folder, 3)
    assert isinstance(datum, neurep.NeuralDatum)
    np.testing.assert_array_equal(datum.decode(), neurep.load(built.folder)[3].decode())


def test_png_items_carry_their_own_modality_columns(built):
    col = NeuralCollection(built.folder)
    last = col._shard(3).metadata  # items 24..29: PNG files; the template is an array's
    assert last["item_modality"]["kind"] == ["file"] * 6
    assert col.model_metadata["modality"]["configuration"]["kind"] == "numpy"
    assert col[29].metadata["modality"]["configuration"]["kind"] == "file"
    assert col[0].metadata["modality"]["configuration"]["kind"] == "numpy"


def test_embeddings_all_at_once_equal_one_by_one(built):
    col = NeuralCollection(built.folder)
    everything = col.embeddings()
    shape = tuple(col.model_metadata["embedding"]["item_shape"])
    assert everything.shape == (30, *shape) and everything.dtype == np.float32
    assert shape[0] == 2 and len(shape) == 3
    one_by_one = np.concatenate([col.embeddings([i]) for i in range(len(col))])
    np.testing.assert_array_equal(everything, one_by_one)
    np.testing.assert_array_equal(col.embeddings([5, 17]), everything[[5, 17]])
    assert col.embeddings([]).shape == (0, *shape)
    # value = code * scale + offset, per channel
    codes = col._shard(0).codes()
    meta = col.model_metadata["embedding"]
    scale = np.asarray(meta["scale"], np.float32).reshape(1, -1, 1, 1)
    offset = np.asarray(meta["offset"], np.float32).reshape(1, -1, 1, 1)
    np.testing.assert_allclose(everything[:8], codes * scale + offset, rtol=0, atol=1e-6)


def test_as_tensors_equals_each_datum_as_tensor(built):
    col = NeuralCollection(built.folder)
    together = col.as_tensors([2, 27])
    assert together.shape == (2, 3, 16, 16)
    for row, index in enumerate((2, 27)):
        alone = col[index].as_tensor()
        torch.testing.assert_close(together[row], alone, rtol=0, atol=1e-6)


def test_a_collection_pickles_as_its_path(built):
    import pickle

    col = NeuralCollection(built.folder)
    col[0]
    again = pickle.loads(pickle.dumps(col))
    assert len(again) == 30 and again.path == col.path
    np.testing.assert_array_equal(again[9].decode(), col[9].decode())


# -- append ----------------------------------------------------------------------------------
def test_append_adds_shards_and_never_rewrites_files(collection_copy, built):
    folder = collection_copy
    before = {p.relative_to(folder).as_posix(): sha256_of(p) for p in folder.rglob("*.nrep*")}
    assert len(before) == 5  # the model file and four shards
    new = [random_image(2000 + i) for i in range(5)]
    col = one_thread(
        lambda: neurep.append(
            folder, new, names=[f"new{i}" for i in range(5)], shard_items=3, progress=False
        )
    )
    after = {p.relative_to(folder).as_posix(): sha256_of(p) for p in folder.rglob("*.nrep*")}
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == ["shards/000004.nreps", "shards/000005.nreps"]
    assert len(col) == 35
    assert col.names == [*built.names, *(f"new{i}" for i in range(5))]
    manifest = json.loads((folder / "collection.json").read_text())
    assert [s["items"] for s in manifest["shards"]] == [8, 8, 8, 6, 3, 2]
    for i, original in enumerate(new):
        decoded = np.asarray(col[30 + i].decode())
        assert decoded.shape == original.shape and decoded.dtype == np.uint8
        assert col.record(30 + i)["psnr"] == pytest.approx(own_psnr(original, decoded), abs=1e-3)
        assert col.record(30 + i)["shard"] == f"shards/{4 + i // 3:06d}.nreps"
    # the old items still decode as before
    old = NeuralCollection(built.folder)
    np.testing.assert_array_equal(col[7].decode(), old[7].decode())


def test_append_refuses_duplicate_names(collection_copy):
    manifest = (collection_copy / "collection.json").read_bytes()
    with pytest.raises(neurep.InputError, match="item000003"):
        neurep.append(collection_copy, [random_image(1)], names=["item000003"], progress=False)
    with pytest.raises(neurep.InputError, match="twice"):
        neurep.append(
            collection_copy, [random_image(1), random_image(2)], names=["x", "x"], progress=False
        )
    assert (collection_copy / "collection.json").read_bytes() == manifest
    assert sorted(p.name for p in (collection_copy / "shards").iterdir()) == [
        f"{n:06d}.nreps" for n in range(4)
    ]


def test_append_refuses_an_item_of_another_shape_naming_it(collection_copy):
    manifest = (collection_copy / "collection.json").read_bytes()
    items = [random_image(3), random_image(4, side=24)]
    with pytest.raises(neurep.InputError, match="odd-one"):
        neurep.append(collection_copy, items, names=["fine", "odd-one"], progress=False)
    assert (collection_copy / "collection.json").read_bytes() == manifest
    assert len(NeuralCollection(collection_copy)) == 30


# -- random access ---------------------------------------------------------------------------
def test_reading_one_item_reads_the_manifest_the_model_and_its_shard(built, monkeypatch):
    folder = built.folder.resolve()
    read: list[str] = []
    listed: list[str] = []

    real_read_bytes = pathlib.Path.read_bytes
    real_open = builtins.open
    real_read_listed = collection_module.read_listed

    def read_bytes(self):
        read.append(Path(self).resolve().relative_to(folder).as_posix())
        return real_read_bytes(self)

    def spy_open(file, *args, **kwargs):
        with contextlib.suppress(TypeError, ValueError):
            read.append(Path(file).resolve().relative_to(folder).as_posix())
        return real_open(file, *args, **kwargs)

    def read_listed(where, entry, what):
        listed.append(entry["file"])
        return real_read_listed(where, entry, what)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(collection_module, "read_listed", read_listed)
    col = neurep.load(folder)
    assert read == ["collection.json"]  # opening reads the manifest only
    decoded = np.asarray(col[27].decode())
    monkeypatch.undo()
    assert listed == ["shards/000003.nreps", "model.nrepm"] or listed == [
        "model.nrepm",
        "shards/000003.nreps",
    ]
    assert sorted(read) == ["collection.json", "model.nrepm", "shards/000003.nreps"]
    np.testing.assert_array_equal(decoded, NeuralCollection(folder)[27].decode())
