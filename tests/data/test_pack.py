"""HDF5 packs (neurep.data.packs): byte-identical round trips, the index as a plain h5py table,
random access that decodes like the original files, hostile and damaged packs, atomic writes,
and readers that pickle into fresh or forked processes."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from _index_rows import ok_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.data._pack_layout import unsafe_path
from neurep.data.packs import PackReader, is_pack, pack, unpack
from neurep.errors import FormatError, InputError, UnsupportedVersionError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOCK = ".neurep-convert.lock"
# the module (neurep.data re-exports the function `pack` under the same name)
pack_module = importlib.import_module("neurep.data.packs")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the convert lock and ``.*.tmp`` leftovers, by path."""
    out = {}
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name != LOCK and not (path.name[0] == "." and name.endswith(".tmp")):
            out[name] = path.read_bytes()
    return out


def copy_of(path: Path, tmp_path: Path) -> Path:
    destination = tmp_path / path.name
    shutil.copyfile(path, destination)
    return destination


def rewrite_table(path: Path, name: str, change) -> None:
    """Replace table ``name`` of the pack at ``path`` by ``change(rows)`` (rows edited in place)."""
    with h5py.File(path, "r+") as h5:
        rows = h5[name][()]
        change(rows)
        del h5[name]
        h5.create_dataset(name, data=rows)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# -- round trips ------------------------------------------------------------------------------
def test_pack_then_unpack_restores_the_folder_byte_for_byte(pack_converted, pack_file, tmp_path):
    original = tree(pack_converted)
    assert {"a.nrep", "b.nrep", "sub/c.nrep", "index.jsonl"} <= set(original)
    assert (pack_converted / LOCK).exists()  # left out of the pack, as it should be
    assert b'"broken.nrep"' in original["index.jsonl"]  # the errored row is packed too
    restored = unpack(pack_file, tmp_path / "restored", progress=False)
    assert tree(restored) == original
    assert not (restored / LOCK).exists()
    assert leftovers(tmp_path) == []


def test_items_are_the_ok_rows_in_index_order(pack_converted, pack_file):
    rows = ok_rows(pack_converted)
    with PackReader(pack_file) as reader:
        assert reader.names == [row["output"] for row in rows]
        assert len(reader) == 3 and "broken.nrep" not in reader.names
        assert "index.jsonl" in reader.files and "sub/c.nrep" in reader.files
        assert [reader.record(i) for i in range(len(reader))] == rows
        assert reader.record(-1) == rows[-1]
        for i, row in enumerate(rows):
            data = (pack_converted / row["output"]).read_bytes()
            assert reader.read_bytes(i) == data
            assert reader.read_bytes(row["output"]) == data
            assert reader.position(row["output"].removesuffix(".nrep")) == i
            assert reader.position(row["source"]) == i
        with pytest.raises(KeyError, match=r"a\.nrep"):
            reader.position("missing")
        with pytest.raises(IndexError):
            reader.record(3)


def test_loaded_items_decode_exactly_like_the_original_files(pack_converted, pack_file):
    with PackReader(pack_file) as reader:
        for i, name in enumerate(reader.names):
            expected = np.asarray(neurep.load(pack_converted / name).decode())
            got = np.asarray(reader.load(i).decode())
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert reader.load("sub/c").metadata == neurep.load(pack_converted / "sub/c.nrep").metadata


def test_plain_h5py_reads_the_tables(pack_converted, pack_file):
    rows = ok_rows(pack_converted)
    with h5py.File(pack_file, "r") as h5:
        assert h5.attrs["format"] == "neurep-pack" and h5.attrs["pack_version"] == 1
        assert h5.attrs["items"] == 3 and h5.attrs["files"] == len(tree(pack_converted))
        items = h5["items"][:]
        files = h5["files"][:]
        data = h5["data"]
        assert data.chunks is None and data.compression is None  # one read per item
        assert [o.decode() for o in items["output"]] == [row["output"] for row in rows]
        assert [s.decode() for s in items["source"]] == [row["source"] for row in rows]
        assert list(items["modality"]) == [b"image"] * 3
        assert list(items["psnr"]) == [row["quality"]["psnr"] for row in rows]
        assert [json.loads(r) for r in items["record"]] == rows
        for item in items:
            path, offset, size, digest = files[item["file"]]
            assert path == item["output"] and size == item["bytes"]
            member = data[offset : offset + size].tobytes()
            assert member == (pack_converted / path.decode()).read_bytes()
            assert hashlib.sha256(member).hexdigest() == digest.decode()


def test_a_folder_without_index_makes_every_nrep_an_item(pack_converted, tmp_path):
    folder = tmp_path / "plain"
    (folder / "z").mkdir(parents=True)
    shutil.copyfile(pack_converted / "a.nrep", folder / "z" / "y.nrep")
    shutil.copyfile(pack_converted / "b.nrep", folder / "x.nrep")
    (folder / "notes.txt").write_text("not an item")
    (folder / ".x.nrep.abc123.tmp").write_bytes(b"half a file")  # crash leftover: left out
    with PackReader(pack(folder, tmp_path / "plain.h5", progress=False)) as reader:
        assert reader.names == ["x.nrep", "z/y.nrep"]
        assert reader.files == ["notes.txt", "x.nrep", "z/y.nrep"]
        assert reader.record(0) == {} and reader.record(1) == {}
        assert reader.load("z/y").metadata == neurep.load(folder / "z" / "y.nrep").metadata


# hypothesis: any tree of files (empty ones included) comes back byte for byte
_names = st.text(alphabet="abcXYZ019-_. é", min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..") and not (n.startswith(".") and n.endswith(".tmp"))
)
_trees = st.dictionaries(
    st.lists(_names, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=300),
    max_size=8,
).filter(lambda t: not any(other.startswith(p + "/") for p in t for other in t))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_trees)
def test_random_trees_round_trip(files):
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "source"
        source.mkdir()
        for name, data in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        packed = pack(source, Path(work) / "p.h5", progress=False)
        assert is_pack(packed)
        with PackReader(packed) as reader:
            assert sorted(reader.files) == sorted(files) and len(reader) == 0
        restored = unpack(packed, Path(work) / "restored", progress=False)
        assert tree(restored) == files
        assert sorted(os.listdir(work)) == ["p.h5", "restored", "source"]


def test_is_pack_sniffs_the_hdf5_signature(pack_file, pack_converted, tmp_path):
    assert is_pack(pack_file) and is_pack(str(pack_file))
    renamed = copy_of(pack_file, tmp_path)
    assert is_pack(renamed.rename(tmp_path / "data.bin"))  # content, not the suffix
    assert not is_pack(pack_converted / "a.nrep")
    assert not is_pack(pack_converted) and not is_pack(tmp_path / "missing.h5")


def test_unsafe_path_names_every_escape():
    for bad in ("", "/etc/passwd", "../evil", "a/../../b", "a//b", "a/", "./a", "a\\b", "a\x00b"):
        assert unsafe_path(bad) is not None, bad
    for good in ("a", "a/b.nrep", "é/..x", "a..b"):
        assert unsafe_path(good) is None, good


# -- damaged and hostile packs ----------------------------------------------------------------
def test_truncated_random_and_foreign_files_raise_format_error(pack_file, tmp_path):
    data = pack_file.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.h5"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["images"] = np.zeros((2, 4, 4), np.uint8)
    for path in (truncated, noise, foreign):
        with pytest.raises(FormatError, match=re.escape(str(path))):
            PackReader(path)
    with pytest.raises(FormatError, match="not a neurep pack"):
        PackReader(foreign)
    with pytest.raises(FormatError):
        unpack(truncated, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda h5: h5.__delitem__("items"), "no /items table"),
        (lambda h5: h5.__delitem__("data"), "no 1-D uint8 /data"),
        (lambda h5: (h5.__delitem__("data"), h5.create_dataset("data", data=[1.0])), "uint8"),
        (lambda h5: h5.attrs.__setitem__("pack_version", 2.5), "bad pack_version"),
        (lambda h5: h5.attrs.__setitem__("files", 99), "attribute files=99"),
        (
            lambda h5: (h5.__delitem__("files"), h5.create_dataset("files", data=[1, 2])),
            "bad /files table",
        ),
    ],
)
def test_malformed_tables_raise_format_error(pack_file, tmp_path, damage, message):
    path = copy_of(pack_file, tmp_path)
    with h5py.File(path, "r+") as h5:
        damage(h5)
    with pytest.raises(FormatError, match=message):
        PackReader(path)


def test_a_newer_pack_version_is_refused(pack_file, tmp_path):
    path = copy_of(pack_file, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["pack_version"] = 2
    with pytest.raises(UnsupportedVersionError, match="pack version 2"):
        PackReader(path)


@pytest.mark.parametrize("field", ["offset", "size"])
def test_offsets_out_of_range_raise_format_error(pack_file, tmp_path, field):
    path = copy_of(pack_file, tmp_path)

    def stretch(rows):
        rows[field][1] = 2**40

    rewrite_table(path, "files", stretch)
    with pytest.raises(FormatError, match="outside /data"):
        PackReader(path)


def test_item_file_rows_must_point_at_their_file(pack_file, tmp_path):
    path = copy_of(pack_file, tmp_path)

    def retarget(rows):
        rows["file"][0] = 10_000

    rewrite_table(path, "items", retarget)
    with pytest.raises(FormatError, match=r"item 'a\.nrep': file row 10000"):
        PackReader(path)


def test_a_flipped_byte_in_one_item_names_that_item(pack_converted, pack_file, tmp_path):
    path = copy_of(pack_file, tmp_path)
    with h5py.File(path, "r") as h5:
        base = h5["data"].id.get_offset()  # where /data starts in the file
        row = h5["items"]["file"][1]
        offset = int(h5["files"]["offset"][row])
    raw = bytearray(path.read_bytes())
    raw[base + offset + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with PackReader(path) as reader:  # the tables are intact: opening works
        name = reader.names[1]
        for read in (reader.read_bytes, reader.load):
            with pytest.raises(FormatError, match=re.escape(f"item {name!r}: damaged")):
                read(1)
        assert reader.read_bytes(0) == (pack_converted / reader.names[0]).read_bytes()
    with pytest.raises(FormatError, match=re.escape(f"file {name!r}: damaged")):
        unpack(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def _garbage_metadata(nrep: bytes) -> bytes:
    """``nrep`` with its root ``zarr.json`` replaced by text that is not JSON."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(nrep)) as source, zipfile.ZipFile(out, "w") as target:
        assert "zarr.json" in source.namelist()
        for info in source.infolist():
            garbage = b'{"zarr_format": 3, "attributes": {"neurep": [1, 2'
            target.writestr(info, garbage if info.filename == "zarr.json" else source.read(info))
    return out.getvalue()


@pytest.mark.parametrize("hostile", ["garbage-metadata", "png", "empty", "noise"])
def test_hostile_member_bytes_raise_format_error_naming_the_item(pack_converted, tmp_path, hostile):
    folder = tmp_path / "folder"
    shutil.copytree(pack_converted, folder)
    if hostile == "garbage-metadata":
        data = _garbage_metadata((folder / "b.nrep").read_bytes())
    elif hostile == "png":
        data = (pack_converted.parent / "source" / "b.png").read_bytes()
    elif hostile == "empty":
        data = b""
    else:
        data = np.random.default_rng(1).integers(0, 256, 2000, np.uint8).tobytes()
    (folder / "b.nrep").write_bytes(data)
    with PackReader(pack(folder, tmp_path / "hostile.h5", progress=False)) as reader:
        assert reader.read_bytes("b.nrep") == data  # its sha256 is right: the bytes are as packed
        with pytest.raises(FormatError) as caught:
            reader.load("b.nrep")
        assert str(caught.value).startswith(f"{reader.path}: item 'b.nrep': ")
        assert reader.load("a.nrep").metadata["modality"]  # the others still load


@pytest.mark.parametrize("bad", ["../evil", "/tmp/evil", "", "a\\b", "sub/../../evil", "a//b"])
def test_hostile_paths_are_refused_before_anything_is_written(pack_file, tmp_path, bad):
    path = copy_of(pack_file, tmp_path)

    def rename(rows):
        rows["path"][0] = bad.encode()

    rewrite_table(path, "files", rename)
    (tmp_path / "inner").mkdir()
    with pytest.raises(FormatError, match="hostile path"):
        unpack(path, tmp_path / "inner" / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["converted.h5", "inner"]
    assert os.listdir(tmp_path / "inner") == []


# -- writing: refusals and atomicity ----------------------------------------------------------
def test_pack_refuses_symlinks_missing_folders_and_itself(pack_converted, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(pack_converted, folder)
    (folder / "link.nrep").symlink_to(folder / "a.nrep")
    with pytest.raises(InputError, match=r"link\.nrep is a symbolic link"):
        pack(folder, tmp_path / "p.h5", progress=False)
    (folder / "link.nrep").unlink()
    os.mkfifo(folder / "pipe")
    with pytest.raises(InputError, match="pipe is not a regular file"):
        pack(folder, tmp_path / "p.h5", progress=False)
    (folder / "pipe").unlink()
    (folder / "back\\slash").write_bytes(b"unpack would refuse this name")
    with pytest.raises(InputError, match="cannot be packed"):
        pack(folder, tmp_path / "p.h5", progress=False)
    (folder / "back\\slash").unlink()
    with pytest.raises(InputError, match="inside the folder"):
        pack(folder, folder / "sub" / "p.h5", progress=False)
    with pytest.raises(InputError, match="no such folder"):
        pack(tmp_path / "missing", tmp_path / "p.h5", progress=False)
    assert leftovers(tmp_path) == [] and not (tmp_path / "p.h5").exists()


def _fail_on_second_member(monkeypatch):
    real = pack_module._write_member
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(pack_module, "_write_member", failing)
    return calls


def test_a_failed_pack_leaves_no_target_and_no_temporary(pack_converted, tmp_path, monkeypatch):
    calls = _fail_on_second_member(monkeypatch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        pack(pack_converted, tmp_path / "p.h5", progress=False)
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_a_failed_pack_leaves_an_existing_pack_untouched(
    pack_converted, pack_file, tmp_path, monkeypatch
):
    target = copy_of(pack_file, tmp_path)
    before = target.read_bytes()
    _fail_on_second_member(monkeypatch)
    with pytest.raises(RuntimeError):
        pack(pack_converted, target, progress=False)
    assert target.read_bytes() == before and os.listdir(tmp_path) == [target.name]
    monkeypatch.undo()
    pack(pack_converted, target, progress=False)  # and a good run replaces it
    with PackReader(target) as reader:
        assert len(reader) == 3


def test_unpack_refuses_a_non_empty_folder_unless_forced(pack_converted, pack_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    unpack(pack_file, out, progress=False)  # an empty folder is fine
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        unpack(pack_file, out, progress=False)
    assert (out / "mine.txt").read_text() == "keep"
    unpack(pack_file, out, force=True, progress=False)
    assert tree(out) == tree(pack_converted)
    assert sorted(os.listdir(tmp_path)) == ["out"]


# -- readers in other processes ---------------------------------------------------------------
CHILD = """
import hashlib, json, pickle, sys
reader = pickle.loads(sys.stdin.buffer.read())
print(json.dumps([hashlib.sha256(reader.read_bytes(i)).hexdigest() for i in range(len(reader))]))
"""


def test_a_pickled_reader_is_small_and_reads_in_a_fresh_process(pack_converted, pack_file):
    reader = PackReader(pack_file)
    reader.read_bytes(0)  # the handle is open now: it must not travel
    blob = pickle.dumps(reader)
    assert len(blob) < os.path.getsize(pack_file) / 4
    copy = pickle.loads(blob)
    assert copy._file is None and copy.read_bytes(2) == reader.read_bytes(2)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], input=blob, capture_output=True, check=True, timeout=120
    )
    expected = [
        hashlib.sha256((pack_converted / name).read_bytes()).hexdigest() for name in reader.names
    ]
    assert json.loads(done.stdout) == expected
    reader.close()


def test_a_forked_child_opens_its_own_handle(pack_file):
    reader = PackReader(pack_file)
    first = reader.read_bytes(0)
    parent_handle = reader._file
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read through the inherited reader, report, leave at once
        status = 1
        try:
            data = reader.read_bytes(1)
            fresh = reader._file is not parent_handle and reader._pid == os.getpid()
            os.write(write_end, hashlib.sha256(data).hexdigest().encode() + b"%d" % fresh)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert answer == hashlib.sha256(reader.read_bytes(1)).hexdigest().encode() + b"1"
    assert reader._file is parent_handle and reader.read_bytes(0) == first
    reader.close()
    assert reader._file is None
