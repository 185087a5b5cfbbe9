"""What is written comes back: arrays, tensors, metadata; plain zarr and safetensors read it."""

from __future__ import annotations

import datetime
import json
import os
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
import zarr
import zarr.storage
from hypothesis import given, settings
from hypothesis import strategies as st
from nrep_helpers import make_metadata, small_inputs

import neurep
from neurep.formats import FORMAT_VERSION, ReadLimits, _zipindex, open_nrep, write_nrep
from neurep.formats._opened import OPENED


def test_small_file_round_trips_arrays_tensors_and_metadata(tmp_path):
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "x.nrep"
    written = write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    assert written == path.stat().st_size
    with open_nrep(path) as reader:
        assert reader.nbytes == written
        assert reader.path == str(path)
        assert reader.array_names == ("embedding",)
        np.testing.assert_array_equal(reader.read_array("embedding"), arrays["embedding"])
        assert reader.read_array("embedding").dtype == np.float16
        loaded = reader.read_tensors()
        assert set(loaded) == set(tensors)
        for name, tensor in tensors.items():
            assert loaded[name].dtype == tensor.dtype
            assert torch.equal(loaded[name], tensor)
        meta = reader.metadata
    assert meta["modality"] == metadata["modality"]
    assert meta["decoder"] == metadata["decoder"]
    assert meta["quality"] == {"psnr": 31.5, "ms_ssim": None}


def test_writer_fills_in_format_version_time_library_and_checksum(tmp_path):
    metadata, arrays, tensors = small_inputs()
    metadata["format_version"] = "0.1"  # the caller cannot override what the writer fills in
    path = tmp_path / "x.nrep"
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    meta = open_nrep(path).metadata
    assert meta["format"] == "neurep" and meta["format_version"] == FORMAT_VERSION == "1.3"
    created = datetime.datetime.fromisoformat(meta["created"].replace("Z", "+00:00"))
    assert created.utcoffset() == datetime.timedelta(0)
    assert before <= created <= datetime.datetime.now(datetime.UTC)
    assert meta["library"]["neurep"] == neurep.__version__
    assert meta["library"]["torch"] == torch.__version__
    assert set(meta["library"]) == {"neurep", "torch"}  # format 1.1: what a decode depends on
    weights = zipfile.ZipFile(path).read("weights.safetensors")
    import hashlib

    assert meta["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert meta["weights"]["nbytes"] == len(weights)
    assert meta["weights"]["member"] == "weights.safetensors"
    assert meta["weights"]["precision"] == "float32"


def test_plain_zarr_and_plain_safetensors_read_the_file(tmp_path):
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    store = zarr.storage.ZipStore(path, mode="r")
    group = zarr.open_group(store, mode="r")
    assert group.attrs["neurep"]["decoder"]["name"] == "tiny"
    np.testing.assert_array_equal(group["embedding"][1:3], arrays["embedding"][1:3])
    store.close()
    loaded = safetensors.torch.load(zipfile.ZipFile(path).read("weights.safetensors"))
    assert torch.equal(loaded["head.weight"], tensors["head.weight"])


def test_every_member_is_stored_and_the_layout_is_a_zarr_hierarchy(tmp_path):
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    infos = zipfile.ZipFile(path).infolist()
    for info in infos:  # format 1.1 deflates the JSON metadata, never the payload
        deflate = info.filename.endswith("zarr.json")
        assert info.compress_type == (zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    names = [info.filename for info in infos]
    assert names[0] == "zarr.json" and names[-1] == "weights.safetensors"
    # default chunking: whole items of axis 0, ~4 kB a chunk: these 3 small items share one
    assert names[1:-1] == ["embedding/zarr.json", "embedding/c/0/0/0/0"]


def test_same_inputs_and_source_date_epoch_give_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    metadata, arrays, tensors = small_inputs()
    first, second = tmp_path / "a.nrep", tmp_path / "b.nrep"
    write_nrep(first, metadata=metadata, arrays=arrays, tensors=tensors)
    write_nrep(second, metadata=metadata, arrays=arrays, tensors=tensors)
    assert first.read_bytes() == second.read_bytes()
    assert open_nrep(first).metadata["created"] == "2023-11-14T22:13:20Z"


def test_opening_from_bytes_equals_opening_the_path(tmp_path):
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    from_path, from_bytes = open_nrep(path), open_nrep(path.read_bytes())
    assert from_bytes.path is None and from_bytes.nbytes == from_path.nbytes
    assert from_bytes.metadata == from_path.metadata
    np.testing.assert_array_equal(from_bytes.read_array("embedding", 1), arrays["embedding"][1])


@pytest.mark.parametrize(
    "dtype",
    [
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
    ],
)
def test_every_array_dtype_round_trips(tmp_path, dtype):
    rng = np.random.default_rng(0)
    embedding = (rng.integers(0, 100, size=(2, 3, 5)) % (2 if dtype == "bool" else 100)).astype(
        dtype
    )
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=make_metadata(embedding), arrays={"embedding": embedding}, tensors={})
    with open_nrep(path) as reader:
        got = reader.read_array("embedding")
    assert got.dtype == embedding.dtype
    np.testing.assert_array_equal(got, embedding)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int8,
        torch.uint8,
        torch.float64,
        torch.int32,
        torch.int64,
        torch.bool,
    ],
)
def test_every_tensor_dtype_round_trips(tmp_path, dtype):
    tensor = (torch.arange(12) % 7).reshape(3, 4).to(dtype)
    metadata, arrays, _ = small_inputs()
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors={"w": tensor, "empty": tensor[:0]})
    loaded = open_nrep(path).read_tensors()
    assert loaded["w"].dtype == dtype and torch.equal(loaded["w"], tensor)
    assert loaded["empty"].shape == (0, 4)


def test_scalar_empty_and_custom_chunked_arrays_round_trip(tmp_path):
    metadata, arrays, tensors = small_inputs()
    arrays = {
        **arrays,
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.int16),
        "volume": np.arange(5 * 7 * 3, dtype=np.int32).reshape(5, 7, 3),
    }
    path = tmp_path / "x.nrep"
    write_nrep(
        path, metadata=metadata, arrays=arrays, tensors=tensors, array_chunks={"volume": (2, 3, 2)}
    )
    with open_nrep(path) as reader:
        assert reader.array_names == ("embedding", "empty", "scalar", "volume")
        assert reader.read_array("scalar").shape == ()
        assert reader.read_array("scalar") == np.float32(2.5)
        assert reader.read_array("empty").shape == (0, 3)
        np.testing.assert_array_equal(reader.read_array("volume"), arrays["volume"])
    names = zipfile.ZipFile(path).namelist()
    assert "volume/c/2/2/1" in names  # grid 3 x 3 x 2 with edge chunks


def test_non_contiguous_and_big_endian_inputs_are_stored_little_endian(tmp_path):
    base = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    path = tmp_path / "x.nrep"
    write_nrep(
        path,
        metadata=make_metadata(base.astype("<i4")),
        arrays={"embedding": base},
        tensors={"t": torch.arange(10.0)[::2]},
    )
    with open_nrep(path) as reader:
        np.testing.assert_array_equal(reader.read_array("embedding"), base)
        assert torch.equal(reader.read_tensors()["t"], torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0]))


_volume = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)


def _index(size: int):
    return st.one_of(
        st.integers(-size, size - 1),
        st.builds(
            slice,
            st.none() | st.integers(-size - 2, size + 2),
            st.none() | st.integers(-size - 2, size + 2),
            st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3]),
        ),
    )


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vol") / "v.nrep"
    _, _, tensors = small_inputs()
    write_nrep(
        path,
        metadata=make_metadata(_volume),
        arrays={"embedding": _volume},
        tensors=tensors,
        array_chunks={"embedding": (4, 2, 3)},
    )
    return path.read_bytes()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_read_array_selection_equals_numpy_indexing(volume_file, data):
    axes = data.draw(st.integers(0, 3))
    selection = tuple(data.draw(_index(size)) for size in _volume.shape[:axes])
    if data.draw(st.booleans()) and axes < 3:
        selection = (*selection, Ellipsis)
    with open_nrep(volume_file) as reader:
        got = reader.read_array("embedding", selection)
    np.testing.assert_array_equal(got, _volume[selection])


def test_read_array_rejects_bad_selections_like_numpy(volume_file):
    with open_nrep(volume_file) as reader:
        with pytest.raises(IndexError):
            reader.read_array("embedding", 6)
        with pytest.raises(IndexError):
            reader.read_array("embedding", (0, 0, 0, 0))
        with pytest.raises(TypeError):
            reader.read_array("embedding", [0, 1])
        with pytest.raises(TypeError):
            reader.read_array("embedding", True)
        with pytest.raises(KeyError, match="no array 'nope'"):
            reader.read_array("nope")


def test_read_array_reads_only_the_chunks_the_selection_touches(tmp_path, monkeypatch):
    frames = np.arange(10 * 3 * 2, dtype=np.float32).reshape(10, 3, 2)
    path = tmp_path / "video.nrep"
    one_a_chunk = {"embedding": (1, 3, 2)}
    write_nrep(
        path,
        metadata=make_metadata(frames),
        arrays={"embedding": frames},
        tensors={},
        array_chunks=one_a_chunk,
    )
    read_members: list[str] = []
    original = _zipindex.ZipIndex.read

    def spy(self, member):
        read_members.append(member)
        return original(self, member)

    monkeypatch.setattr(_zipindex.ZipIndex, "read", spy)
    with open_nrep(path) as reader:
        read_members.clear()
        np.testing.assert_array_equal(reader.read_array("embedding", slice(4, 7)), frames[4:7])
        assert read_members == [f"embedding/c/{i}/0/0" for i in (4, 5, 6)]
        read_members.clear()
        reader.read_array("embedding", (slice(1, 9, 3), 2))
        assert read_members == [f"embedding/c/{i}/0/0" for i in (1, 4, 7)]


@pytest.mark.parametrize(
    ("shape", "dtype", "rows"),
    [
        ((60, 4, 3, 5), np.uint8, 68),  # 60 B a frame: 68 frames fill 4,080 B -> all 60
        ((300, 4, 3, 5), np.uint8, 68),
        ((10, 16, 64, 64), np.uint8, 1),  # 64 kB a frame: one a chunk
        ((1, 16, 12, 8), np.float32, 1),
        ((7, 2, 8, 8), np.float32, 8),  # 512 B a row: 8 rows -> all 7
    ],
)
def test_default_chunks_gather_whole_items_up_to_4_kilobytes(tmp_path, shape, dtype, rows):
    codes = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    path = tmp_path / "chunks.nrep"
    write_nrep(path, metadata=make_metadata(codes), arrays={"embedding": codes}, tensors={})
    expected_rows = min(rows, shape[0])
    with zipfile.ZipFile(path) as archive:
        chunk_names = [n for n in archive.namelist() if n.startswith("embedding/c/")]
    assert len(chunk_names) == -(-shape[0] // expected_rows)
    with open_nrep(path) as reader:
        np.testing.assert_array_equal(reader.read_array("embedding", slice(2, 5)), codes[2:5])


def test_open_reads_no_payload(tmp_path, monkeypatch):
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "x.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    read_members: list[str] = []
    original = _zipindex.ZipIndex.read
    monkeypatch.setattr(
        _zipindex.ZipIndex,
        "read",
        lambda self, member: read_members.append(member) or original(self, member),
    )
    OPENED.clear()  # a first open: not answered from the memo of validated files
    open_nrep(path).close()
    assert read_members == ["zarr.json", "embedding/zarr.json"]


def test_closed_reader_refuses_reads(small_file, tmp_path):
    path = tmp_path / "x.nrep"
    path.write_bytes(small_file)
    reader = open_nrep(path)
    with reader:
        pass
    with pytest.raises(ValueError, match="closed"):
        reader.read_tensors()
    reader = open_nrep(small_file)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read_array("embedding")


def test_a_video_sized_file_loads_with_default_limits(tmp_path):
    # 300 frames of a 64 x 18 x 32 float16 embedding (~22 MB) and 8 MB of weights
    frames = np.random.default_rng(0).standard_normal((300, 64, 18, 32)).astype(np.float16)
    tensors = {"w": torch.zeros(2 * 1024 * 1024)}
    path = tmp_path / "video.nrep"
    written = write_nrep(
        path, metadata=make_metadata(frames), arrays={"embedding": frames}, tensors=tensors
    )
    assert written > 25_000_000
    with open_nrep(path, limits=ReadLimits()) as reader:
        np.testing.assert_array_equal(reader.read_array("embedding", slice(10, 20)), frames[10:20])
        assert reader.read_tensors()["w"].numel() == 2 * 1024 * 1024


def test_quantised_codes_are_zstd_compressed_when_it_pays_and_plain_zarr_reads_them(tmp_path):
    rng = np.random.default_rng(1)
    codes = np.clip(rng.normal(32, 6, size=(4, 16, 24, 24)), 0, 63).astype(np.uint8)
    noise = rng.integers(0, 256, size=(2, 500), dtype=np.uint8)  # incompressible: stays raw
    path = tmp_path / "codes.nrep"
    written = write_nrep(
        path,
        metadata=make_metadata(codes),
        arrays={"embedding": codes, "noise": noise},
        tensors={},
    )
    assert written < 0.8 * codes.nbytes
    archive = zipfile.ZipFile(path)
    codecs = json.loads(archive.read("embedding/zarr.json"))["codecs"]
    assert [codec["name"] for codec in codecs] == ["bytes", "zstd"]
    assert [c["name"] for c in json.loads(archive.read("noise/zarr.json"))["codecs"]] == ["bytes"]
    with open_nrep(path) as reader:
        np.testing.assert_array_equal(reader.read_array("embedding"), codes)
        np.testing.assert_array_equal(reader.read_array("embedding", (2, 5)), codes[2, 5])
        np.testing.assert_array_equal(reader.read_array("noise"), noise)
    store = zarr.storage.ZipStore(path, mode="r")
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["embedding"][1], codes[1])
    store.close()


def test_an_unclosed_reader_does_not_leak_its_file_descriptor(small_file, tmp_path):
    import gc

    path = tmp_path / "x.nrep"
    path.write_bytes(small_file)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(50):
        assert open_nrep(path).metadata["format"] == "neurep"
    gc.collect()
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_the_on_disk_bytes_are_pinned(tmp_path, monkeypatch):
    """Same inputs, same bytes. If this fails after a deliberate change to the layout, update
    docs/FORMAT.md and the pin; after a zarr upgrade, check the zarr.json diff is harmless."""
    from neurep.formats import _writer

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    monkeypatch.setattr(_writer, "_library_versions", lambda: {"neurep": "pinned"})
    metadata, arrays, tensors = small_inputs()
    path = tmp_path / "pinned.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == PINNED_SHA256, digest


PINNED_SHA256 = "00d98da2435f2d77ea89e366d367725282bfe567191f94267b5b23b3d7b1cbc0"


_sparse = (np.arange(64 * 40, dtype=np.int32).reshape(64, 40) % 997) + 1


@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory):
    """(bytes, expected values) of a (64, 40) array in 1 x 1 chunks, most chunks absent."""
    from nrep_helpers import build_zip, members_of

    path = tmp_path_factory.mktemp("sparse") / "s.nrep"
    write_nrep(
        path,
        metadata=make_metadata(_sparse),
        arrays={"embedding": _sparse},
        tensors={},
        array_chunks={"embedding": (1, 1)},
    )
    expected = _sparse.copy()
    kept = []
    for name, payload in members_of(path.read_bytes()):
        if name.startswith("embedding/c/"):
            row, column = (int(part) for part in name.split("/")[2:])
            if (row * 7 + column * 3) % 5:  # drop 4 chunks out of 5
                expected[row, column] = 0  # the fill value
                continue
        kept.append((name, payload))
    return build_zip(kept), expected


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_read_array_on_a_sparse_file_equals_numpy_with_the_fill_value(sparse_file, data):
    content, expected = sparse_file
    selection = tuple(
        data.draw(_index(size)) for size in expected.shape[: data.draw(st.integers(0, 2))]
    )
    with open_nrep(content) as reader:
        np.testing.assert_array_equal(
            reader.read_array("embedding", selection), expected[selection]
        )


def test_both_read_strategies_are_used_on_the_sparse_file(sparse_file, monkeypatch):
    from neurep.formats import _reader

    calls = []
    for method in ("_fill_touched", "_fill_present"):
        original = getattr(_reader.NrepReader, method)
        monkeypatch.setattr(
            _reader.NrepReader,
            method,
            lambda self, *args, _original=original, _name=method: (
                calls.append(_name) or _original(self, *args)
            ),
        )
    content, expected = sparse_file
    with open_nrep(content) as reader:
        np.testing.assert_array_equal(reader.read_array("embedding"), expected)
        np.testing.assert_array_equal(reader.read_array("embedding", 5), expected[5])
    assert calls == ["_fill_present", "_fill_touched"]


def test_a_reader_pickles_as_a_reopen_for_data_loader_workers(small_file, tmp_path):
    import pickle

    path = tmp_path / "x.nrep"
    path.write_bytes(small_file)
    for origin in (path, small_file):
        with open_nrep(origin) as reader:
            clone = pickle.loads(pickle.dumps(reader))
        with clone:
            assert clone.metadata == open_nrep(small_file).metadata
            assert clone.read_array("embedding", 2).shape == (2, 2, 2)
    closed = open_nrep(small_file)
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(closed)
