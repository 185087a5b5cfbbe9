"""Which items a source holds, where their outputs go, and how they are hashed."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from _convert_helpers import write_pngs

import neurep
from neurep.conversion.sources import FileItem, RowItem, find_items, row_sha256


def test_a_folder_yields_its_data_files_recursively_with_mirrored_outputs(tmp_path):
    source = tmp_path / "src"
    write_pngs(source, ["a.png", "sub/b.png", "sub/deep/c.jpg", ".hidden.png"])
    (source / "notes.txt").write_text("not data")
    (source / ".cache").mkdir()
    write_pngs(source / ".cache", ["d.png"])
    np.save(source / "sub" / "e.npy", np.zeros(8))
    (source / "old.nrep").write_bytes(b"")

    items = find_items(source)

    assert [item.output for item in items] == [
        "a.nrep",
        "sub/b.nrep",
        "sub/e.nrep",
        "sub/deep/c.nrep",
    ]
    assert all(isinstance(item, FileItem) for item in items)
    assert items[1].label == str(source / "sub" / "b.png")


def test_an_output_folder_inside_the_source_is_not_searched(tmp_path):
    write_pngs(tmp_path, ["a.png", "out/a.png"])
    assert [i.output for i in find_items(tmp_path, exclude=tmp_path / "out")] == ["a.nrep"]


def test_a_modality_narrows_a_folder_to_its_extensions(tmp_path):
    write_pngs(tmp_path, ["a.png"])
    np.save(tmp_path / "b.npy", np.zeros(8))
    assert [i.output for i in find_items(tmp_path, modality="array")] == ["b.nrep"]


def test_sources_that_would_share_an_output_keep_their_suffix(tmp_path):
    write_pngs(tmp_path, ["x.png", "x.jpg", "y.png"])
    assert [i.output for i in find_items(tmp_path)] == ["x.jpg.nrep", "x.png.nrep", "y.nrep"]


def test_a_glob_is_relative_to_its_literal_prefix(tmp_path):
    write_pngs(tmp_path, ["data/a/1.png", "data/b/2.png", "data/b/3.jpg"])
    items = find_items(str(tmp_path / "data" / "**" / "*.png"))
    assert [i.output for i in items] == ["a/1.nrep", "b/2.nrep"]


def test_a_list_file_names_paths_relative_to_itself(tmp_path):
    write_pngs(tmp_path, ["imgs/a.png", "imgs/b.png"])
    listing = tmp_path / "files.txt"
    listing.write_text("# two images\nimgs/a.png\n\n  imgs/b.png  \nimgs/a.png\nimgs/missing.png\n")
    items = find_items(listing)
    assert [i.output for i in items] == ["imgs/a.nrep", "imgs/b.nrep", "imgs/missing.nrep"]
    assert items[0].path == str(tmp_path / "imgs" / "a.png")


def test_one_data_file_is_refused_with_a_pointer_to_fit(tmp_path):
    (path,) = write_pngs(tmp_path, ["a.png"])
    with pytest.raises(neurep.InputError, match="neurep fit"):
        find_items(path)


def test_a_missing_source_is_an_input_error(tmp_path):
    with pytest.raises(neurep.InputError, match="no such file or folder"):
        find_items(tmp_path / "nothing")
    with pytest.raises(neurep.InputError, match="matches no files"):
        find_items(str(tmp_path / "*.png"))


@pytest.fixture
def h5_file(tmp_path):
    path = tmp_path / "data.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8))
        file.create_dataset("group/signals", data=rng.random((2, 32)).astype(np.float32))
        file.create_dataset("scalar", data=np.arange(4))
    return path


def test_hdf5_rows_are_items_named_by_key_and_row(h5_file):
    items = find_items(h5_file, key="group/signals")
    assert [i.output for i in items] == ["group/signals/000000.nrep", "group/signals/000001.nrep"]
    assert all(isinstance(item, RowItem) for item in items)


def test_an_hdf5_row_is_read_alone_where_read_runs_and_hashed_with_its_dtype(h5_file):
    item = find_items(h5_file, key="images")[1]
    moved = pickle.loads(pickle.dumps(item))  # what a worker receives: no open handle
    assert len(pickle.dumps(item)) < 500
    values, digest = moved.read()
    with h5py.File(h5_file) as file:
        np.testing.assert_array_equal(values, file["images"][1])
    assert digest == row_sha256(values)
    assert digest != row_sha256(values.astype(np.uint16))
    assert digest != row_sha256(values.reshape(8, 24))


def test_an_hdf5_file_needs_a_usable_key(h5_file):
    with pytest.raises(neurep.InputError, match=r"--key NAME.*images"):
        find_items(h5_file)
    with pytest.raises(neurep.InputError, match="has no dataset 'nope'"):
        find_items(h5_file, key="nope")
    with pytest.raises(neurep.InputError, match="rows must be the items"):
        find_items(h5_file, key="scalar")
