"""Hostile input (issue #5): any bytes either work or raise FormatError naming file and problem."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nrep_helpers import (
    assert_rejected,
    build_zip,
    central_entry,
    exercise,
    local_header,
    members_of,
    patch_central,
    tamper,
    with_central_entries,
    works_or_format_error,
    zip_layout,
)

from neurep.errors import FormatError, ResourceLimitError, UnsupportedVersionError
from neurep.formats import NrepFormatWarning, ReadLimits, open_nrep

# -- damaged bytes ---------------------------------------------------------------------------


def test_the_small_file_itself_is_valid(small_file):
    assert works_or_format_error(small_file)


def test_truncation_at_every_offset_is_a_format_error(small_file):
    for end in range(len(small_file)):
        with pytest.raises(FormatError) as info:
            exercise(small_file[:end])
        assert str(info.value).startswith("<bytes>: ")


def test_a_flipped_byte_in_any_member_payload_is_detected(small_file):
    with zipfile.ZipFile(io.BytesIO(small_file)) as archive:
        infos = archive.infolist()
    for info in infos:
        start = info.header_offset + 30 + len(info.filename.encode())
        # compress_size: the member's bytes in the file (zarr.json members are deflated)
        for position in range(start, start + info.compress_size, max(1, info.compress_size // 7)):
            damaged = bytearray(small_file)
            damaged[position] ^= 0x40
            with pytest.raises(FormatError):
                exercise(bytes(damaged))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=6)
)
def test_random_byte_flips_never_raise_anything_but_format_error(small_file, flips):
    damaged = bytearray(small_file)
    for position, mask in flips:
        damaged[position % len(damaged)] ^= mask
    works_or_format_error(bytes(damaged))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_format_error(data):
    works_or_format_error(data)


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=300),
    name=st.sampled_from(
        ["zarr.json", "weights.safetensors", "embedding/zarr.json", "embedding/c/0/0/0/0"]
    ),
)
def test_any_member_replaced_by_random_bytes_is_a_format_error(small_file, payload, name):
    members = [(n, payload if n == name else p) for n, p in members_of(small_file)]
    works_or_format_error(build_zip(members))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (b"hello, world" * 10, "not a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a ZIP archive"),
        (build_zip([]), "without a root zarr.json"),
        (build_zip([("readme.txt", b"hi")]), "without a root zarr.json"),
    ],
)
def test_foreign_bytes_are_format_errors(data, match):
    assert_rejected(data, match)


def test_trailing_or_prepended_bytes_are_rejected(small_file):
    assert_rejected(small_file + b"junk", "not a ZIP archive")
    assert_rejected(b"junk" + small_file, "central directory does not end")


# -- the ZIP structure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_name",
    ["../evil", "/etc/passwd", "embedding/../../x", "a\\b", "c:/x", "embedding//x", "./zarr.json"],
)
def test_member_names_that_escape_or_are_odd_are_rejected(small_file, bad_name):
    members = [*members_of(small_file), (bad_name, b"x")]
    assert_rejected(build_zip(members), "ZIP member")


def test_non_ascii_member_names_are_rejected(small_file):
    members = [*members_of(small_file), ("caf\u00e9", b"x")]
    assert_rejected(build_zip(members), "ZIP member")


def test_duplicate_members_are_rejected(small_file):
    members = members_of(small_file)
    assert_rejected(build_zip([*members, members[0]]), "duplicate ZIP member 'zarr.json'")
    weights = [m for m in members if m[0] == "weights.safetensors"]
    assert_rejected(build_zip([*members, *weights]), "duplicate")


def test_deflated_members_are_rejected_without_decompressing(small_file):
    assert_rejected(
        build_zip(members_of(small_file), compression=zipfile.ZIP_DEFLATED), "compressed"
    )
    bomb = build_zip(
        [*members_of(small_file), ("embedding/c/9/0/0/0", bytes(50_000_000))],
        compression=zipfile.ZIP_DEFLATED,
    )
    assert len(bomb) < 200_000
    started = time.perf_counter()
    assert_rejected(bomb, "compressed")
    assert time.perf_counter() - started < 1.0


def test_declared_sizes_must_fit_inside_the_file(small_file):
    huge = patch_central(small_file, "weights.safetensors", size=2**31, compressed=2**31)
    assert_rejected(huge, "run past")
    lying = patch_central(small_file, "weights.safetensors", compressed=5)
    assert_rejected(lying, "declares 5 stored bytes")
    outside = patch_central(small_file, "zarr.json", offset=len(small_file) * 3)
    assert_rejected(outside, "local header outside")


def test_zip64_sizes_are_checked_too(small_file):
    cd_offset, cd_size, eocd = zip_layout(small_file)
    weights = zipfile.ZipFile(io.BytesIO(small_file)).getinfo("weights.safetensors")
    # the weights' central entry rewritten to take its size from a ZIP64 extra field: 2**62
    extra = struct.pack("<HHQQ", 1, 16, 2**62, 2**62)
    entry = central_entry(
        "weights.safetensors", crc=weights.CRC, size=0xFFFFFFFF, offset=weights.header_offset
    )
    entry = entry[:30] + struct.pack("<H", len(extra)) + entry[32:] + extra
    directory = bytearray()
    position = cd_offset
    while position < cd_offset + cd_size:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", small_file, position + 28)
        name = small_file[position + 46 : position + 46 + name_len].decode()
        length = 46 + name_len + extra_len + comment_len
        directory += entry if name == "weights.safetensors" else small_file[position:][:length]
        position += length
    count = struct.unpack_from("<H", small_file, eocd + 10)[0]
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), cd_offset, 0)
    assert_rejected(
        small_file[:cd_offset] + bytes(directory) + end, "declares 4611686018427387904 bytes"
    )
    damaged_extra = small_file[:cd_offset] + bytes(directory).replace(extra, extra[:6] + bytes(14))
    works_or_format_error(damaged_extra + end)


def test_overlapping_members_are_rejected(small_file):
    payload = b'{"a": 1}'
    crc = zlib.crc32(payload)
    nested = local_header("inner.json", crc=crc, size=len(payload)) + payload
    data = build_zip([*members_of(small_file), ("outer.bin", nested)])
    outer = zipfile.ZipFile(io.BytesIO(data)).getinfo("outer.bin")
    inner_offset = outer.header_offset + 30 + len("outer.bin")
    data = with_central_entries(
        data, [central_entry("inner.json", crc=crc, size=len(payload), offset=inner_offset)]
    )
    assert_rejected(data, "overlap")


def test_absurd_member_counts_are_rejected_before_parsing(small_file):
    _, _, eocd = zip_layout(small_file)
    lying = bytearray(small_file)
    struct.pack_into("<HH", lying, eocd + 8, 0xFFFE, 0xFFFE)
    assert_rejected(bytes(lying), "central directory too small")
    many = build_zip([*members_of(small_file)] + [(f"x{i}", b"") for i in range(60)])
    with pytest.raises(ResourceLimitError, match="max_members"):
        open_nrep(many, limits=ReadLimits(max_members=50))


def test_encrypted_members_are_rejected(small_file):
    data = bytearray(small_file)
    cd_offset, _, _ = zip_layout(small_file)
    struct.pack_into("<H", data, cd_offset + 8, 0x0001)  # "encrypted" flag of the first entry
    assert_rejected(bytes(data), "unsupported ZIP features")


def test_unexpected_members_and_chunks_are_rejected(small_file):
    assert_rejected(build_zip([*members_of(small_file), ("notes.txt", b"hi")]), "unexpected")
    assert_rejected(
        build_zip([*members_of(small_file), ("embedding/c/9/0/0/0", bytes(16))]),
        "outside the array's chunk grid",
    )
    assert_rejected(
        build_zip([*members_of(small_file), ("embedding/c/00/0/0/0", bytes(16))]), "bad chunk key"
    )
    assert_rejected(build_zip([*members_of(small_file), ("other/c/0", bytes(16))]), "unexpected")


def test_an_out_of_range_float_fill_value_reads_as_infinity_without_warnings(small_file):
    members = [m for m in members_of(small_file) if m[0] != "embedding/c/1/0/0/0"]
    data = _edit_array(build_zip(members), fill_value=1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = open_nrep(data).read_array("embedding", 1)
    assert np.isinf(values).all()


def test_a_chunk_of_the_wrong_size_is_rejected(small_file):
    members = [(n, p[:-2] if n == "embedding/c/1/0/0/0" else p) for n, p in members_of(small_file)]
    assert_rejected(build_zip(members), "is 14 bytes, expected 16")


def test_a_missing_chunk_reads_as_the_fill_value(small_file):
    members = [m for m in members_of(small_file) if m[0] != "embedding/c/1/0/0/0"]
    with open_nrep(build_zip(members)) as reader:
        values = reader.read_array("embedding")
    assert not values[1].any() and values[2].any()


# -- metadata ----------------------------------------------------------------------------------


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split("/")
        node = meta
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("format", "zarrstuff", "not a neurep file"),
        ("format_version", "1", "MAJOR.MINOR"),
        ("format_version", "0.9", "predates"),
        ("created", "yesterday", "created"),
        ("decoder", KeyError, "'decoder' is a required property"),
        ("decoder/name", "", "decoder/name"),
        ("decoder/configuration", [1, 2], "decoder/configuration"),
        ("embedding/dtype", "complex64", "embedding/dtype"),
        ("embedding/shape", [3, 2, 2], "embedding says shape"),
        ("embedding/array", "frames", "not an array in the file"),
        ("weights/sha256", "xyz", "weights/sha256"),
        ("weights/nbytes", 5, "weights/nbytes says 5"),
        ("weights/member", "../w.bin", "weights/member"),
        ("weights/precision", "int99", "weights/precision"),
        ("quality/psnr", "high", "quality/psnr"),
        ("surprise", 1, "Additional properties"),
        ("decoder/configuration/blob", "x" * 70_000, "string of 70000"),
    ],
)
def test_invalid_metadata_is_a_format_error_naming_the_field(small_file, path, value, match):
    assert_rejected(tamper(small_file, metadata=_set(path, value)), match)


def test_a_future_major_version_is_unsupported_whatever_else_it_holds(small_file):
    def future(meta):
        meta.clear()
        meta.update(format="neurep", format_version="2.0", layout="something new")

    with pytest.raises(UnsupportedVersionError, match=r"format 2\.0.*upgrade neurep"):
        open_nrep(tamper(small_file, metadata=future))


def test_a_newer_minor_version_is_read_with_a_warning_about_unknown_keys(small_file):
    def newer(meta):
        meta["format_version"] = "1.7"
        meta["thumbnail"] = {"array": "thumb"}
        meta["weights"]["signature"] = "abc"

    data = tamper(small_file, metadata=newer)
    data = build_zip([*members_of(data), ("extras.bin", b"new member")])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reader = open_nrep(data)
    messages = [str(item.message) for item in record]
    assert all(issubclass(item.category, NrepFormatWarning) for item in record)
    assert any("does not know: thumbnail, weights/signature" in message for message in messages)
    assert any("'extras.bin'" in message for message in messages)
    assert reader.metadata["thumbnail"] == {"array": "thumb"}
    assert reader.read_tensors()


def test_root_zarr_json_must_be_a_neurep_group(small_file):
    def replace_root(root: dict) -> bytes:
        return build_zip(
            [
                (n, json.dumps(root).encode() if n == "zarr.json" else p)
                for n, p in members_of(small_file)
            ]
        )

    assert_rejected(
        replace_root({"zarr_format": 3, "node_type": "group", "attributes": {}}),
        "no 'neurep' attribute",
    )
    assert_rejected(replace_root({"zarr_format": 2, "node_type": "group"}), "zarr v3 group")
    assert_rejected(replace_root([1, 2]), "not a JSON object")


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"\xff\xfe{}",
        b"[" * 100_000,
        b'{"a": ' + b"1" * 5000 + b"}",
        b"{" * 5,
    ],
)
def test_malformed_json_is_a_format_error(small_file, text):
    members = [(n, text if n == "zarr.json" else p) for n, p in members_of(small_file)]
    started = time.perf_counter()
    assert_rejected(build_zip(members))
    assert time.perf_counter() - started < 1.0


def test_deeply_nested_or_huge_free_form_metadata_is_bounded(small_file):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ResourceLimitError, match="max_json_depth"):
        exercise(tamper(small_file, metadata=_set("fit/deep", deep)))
    wide = list(range(60_000))
    started = time.perf_counter()
    with pytest.raises(ResourceLimitError, match="max_json_nodes"):
        exercise(tamper(small_file, metadata=_set("fit/wide", wide)))
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ResourceLimitError, match="max_metadata_bytes"):
        open_nrep(small_file, limits=ReadLimits(max_metadata_bytes=100))
    many_arrays = build_zip(
        [*members_of(small_file)]
        + [
            (f"a{i}/zarr.json", dict(members_of(small_file))["embedding/zarr.json"])
            for i in range(60)
        ]
    )
    with pytest.raises(ResourceLimitError, match="max_total_metadata_bytes"):
        open_nrep(many_arrays, limits=ReadLimits(max_total_metadata_bytes=8000))


# -- zarr array metadata -----------------------------------------------------------------------


def _edit_array(small_file: bytes, **changes) -> bytes:
    def edit(members):
        result = []
        for name, payload in members:
            if name == "embedding/zarr.json":
                doc = json.loads(payload)
                doc.update(changes)
                payload = json.dumps(doc).encode()
            result.append((name, payload))
        return result

    return tamper(small_file, members=edit)


@pytest.mark.parametrize(
    ("changes", "match", "error"),
    [
        ({"shape": [2**40, 2**40, 2, 2]}, "max_elements", ResourceLimitError),
        ({"shape": [3] * 40}, "max_ndim", ResourceLimitError),
        ({"shape": [3, -2, 2, 2]}, "integers >= 0", FormatError),
        ({"shape": "big"}, "integers", FormatError),
        ({"data_type": "complex64"}, "data_type", FormatError),
        ({"data_type": "float8"}, "data_type", FormatError),
        ({"data_type": {"name": "float32"}}, "data_type", FormatError),  # found by fuzzing
        ({"data_type": ["uint8"]}, "data_type", FormatError),
        ({"data_type": "float32"}, "expected 32", FormatError),
        (
            {"codecs": [{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 1}}]},
            "codecs",
            FormatError,
        ),
        ({"codecs": [{"name": "bytes"}, {"name": "zstd"}]}, "codecs", FormatError),
        (
            {"codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": "x"}}]},
            "codecs",
            FormatError,
        ),
        ({"codecs": [{"name": "zstd", "configuration": {}}]}, "codecs", FormatError),
        (
            {"codecs": [{"name": "bytes", "configuration": {"endian": "big"}}]},
            "codecs",
            FormatError,
        ),
        (
            {"chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [0, 2, 2, 2]}}},
            "chunk_shape",
            FormatError,
        ),
        (
            {
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [2**31, 2**20, 1, 1]},
                }
            },
            "max_elements|max_decoded_bytes",
            ResourceLimitError,
        ),
        ({"chunk_grid": {"name": "rectilinear"}}, "regular", FormatError),
        ({"chunk_key_encoding": {"name": "v2"}}, "chunk_key_encoding", FormatError),
        ({"fill_value": "lots"}, "fill_value", FormatError),
        ({"storage_transformers": [{"name": "x"}]}, "storage transformers", FormatError),
        ({"node_type": "group"}, "zarr v3 array", FormatError),
        ({"extra_key": 1}, "unknown keys", FormatError),
    ],
)
def test_invalid_array_metadata_is_rejected(small_file, changes, match, error):
    with pytest.raises(error, match=match):
        exercise(_edit_array(small_file, **changes))


def test_absurd_declarations_allocate_nothing_large(small_file):
    hostile = [
        _edit_array(small_file, shape=[2**28, 2, 2, 2]),
        _edit_array(
            small_file,
            chunk_grid={"name": "regular", "configuration": {"chunk_shape": [2**27, 2, 2, 2]}},
        ),
        patch_central(small_file, "weights.safetensors", size=2**31, compressed=2**31),
        tamper(small_file, weights=struct.pack("<Q", 2**60) + b"{}"),
    ]
    limits = ReadLimits(max_decoded_bytes=1 << 20, max_elements=1 << 18)
    for data in hostile:
        tracemalloc.start()
        try:
            with pytest.raises(FormatError):
                exercise(data, limits=limits)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak


def test_read_limits_bound_what_a_read_materialises(small_file):
    with pytest.raises(ResourceLimitError, match="max_file_bytes"):
        open_nrep(small_file, limits=ReadLimits(max_file_bytes=100))
    with open_nrep(small_file, limits=ReadLimits(max_decoded_bytes=40)) as reader:
        assert reader.read_array("embedding", 0).shape == (2, 2, 2)
        with pytest.raises(ResourceLimitError, match="read a smaller selection"):
            reader.read_array("embedding")
        with pytest.raises(ResourceLimitError, match="weights"):
            reader.read_tensors()
    with pytest.raises(ValueError, match="positive int"):
        ReadLimits(max_members=0)


# -- weights -----------------------------------------------------------------------------------


def _safetensors(header: dict, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (
            _safetensors(
                {"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 8]}}, bytes(8)
            ),
            "needs 48 bytes",
        ),
        (
            _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(16)),
            "data section has 16",
        ),
        (
            _safetensors(
                {
                    "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                bytes(12),
            ),
            "must be contiguous",
        ),
        (
            _safetensors(
                {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, bytes(2)
            ),
            "dtype 'F8_E4M3'",
        ),
        (
            _safetensors(
                {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 2**82]}}, b""
            ),
            "max_elements",
        ),
        (
            _safetensors(
                {"w": {"dtype": {"F": 32}, "shape": [1], "data_offsets": [0, 4]}}, bytes(4)
            ),
            "has dtype",
        ),
        (
            _safetensors({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
            "has dtype",
        ),
        (
            _safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
            "malformed",
        ),
        (_safetensors({"w": {"dtype": "F32", "shape": [1]}}, bytes(4)), "exactly"),
        (_safetensors({"__metadata__": {"a": 1}}, b""), "__metadata__"),
        (_safetensors([1, 2], b""), "not a JSON object"),
        (struct.pack("<Q", 2**63) + b"{}", "more than the member"),
        (b"\x02\x00", "too short"),
        (struct.pack("<Q", 4) + b"\xff\xff\xff\xff", "not valid JSON"),
    ],
)
def test_weights_whose_header_disagrees_with_the_bytes_are_rejected(small_file, weights, match):
    reader = open_nrep(tamper(small_file, weights=weights))
    with reader, pytest.raises(FormatError, match=match) as info:
        reader.read_tensors()
    assert str(info.value).startswith("<bytes>: ")


def test_tampered_weights_fail_the_checksum(small_file):
    original = dict(members_of(small_file))["weights.safetensors"]
    loaded = safetensors.torch.load(original)
    loaded["head.weight"] = loaded["head.weight"] + 1
    forged = safetensors.torch.save(dict(sorted(loaded.items())))
    assert len(forged) == len(original)
    with open_nrep(tamper(small_file, weights=forged, fix_checksum=False)) as reader:
        with pytest.raises(FormatError, match="does not match metadata weights/sha256"):
            reader.read_tensors()
        np.testing.assert_array_equal(reader.read_array("embedding").shape, (3, 2, 2, 2))
    with open_nrep(tamper(small_file, weights=forged)) as reader:
        assert torch.equal(reader.read_tensors()["head.weight"], loaded["head.weight"])


def test_missing_weights_member_is_rejected(small_file):
    members = [m for m in members_of(small_file) if m[0] != "weights.safetensors"]
    assert_rejected(build_zip(members), "weights member 'weights.safetensors' is missing")


# -- paths -------------------------------------------------------------------------------------


def test_path_problems_raise_the_builtin_and_content_problems_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_nrep(tmp_path / "missing.nrep")
    with pytest.raises(IsADirectoryError):
        open_nrep(tmp_path)
    junk = tmp_path / "junk.nrep"
    junk.write_bytes(b"not a zip")
    with pytest.raises(FormatError) as info:
        open_nrep(junk)
    assert str(info.value).startswith(f"{junk}: ")
    with pytest.raises(TypeError):
        open_nrep(12)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_rejected_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.nrep"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="not a regular file"):
        open_nrep(fifo)


def test_other_exceptions_do_not_escape_from_a_broken_safetensors_library(small_file, monkeypatch):
    import neurep.formats._weights as weights_module

    def explode(data):
        raise RuntimeError("boom")

    monkeypatch.setattr(weights_module.safetensors.torch, "load", explode)
    with open_nrep(small_file) as reader, pytest.raises(FormatError, match="boom"):
        reader.read_tensors()


def test_member_crc_mismatch_is_detected(small_file):
    data = patch_central(small_file, "embedding/c/0/0/0/0", crc=1234)
    with open_nrep(data) as reader:
        with pytest.raises(FormatError, match="CRC-32 mismatch"):
            reader.read_array("embedding", 0)
        np.testing.assert_array_equal(reader.read_array("embedding", 1).shape, (2, 2, 2))
    assert torch.is_tensor(torch.zeros(1))


# -- zstd chunks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zstd_file(tmp_path_factory) -> bytes:
    from nrep_helpers import make_metadata

    from neurep.formats import write_nrep

    codes = (np.arange(2 * 64 * 64) % 5).astype(np.uint8).reshape(2, 64, 64)
    path = tmp_path_factory.mktemp("zstd") / "codes.nrep"
    write_nrep(path, metadata=make_metadata(codes), arrays={"embedding": codes}, tensors={})
    data = path.read_bytes()
    assert b'"zstd"' in dict(members_of(data))["embedding/zarr.json"]
    return data


def _with_chunk(data: bytes, payload: bytes) -> bytes:
    return build_zip([(n, payload if n == "embedding/c/1/0/0" else p) for n, p in members_of(data)])


def test_zstd_frames_that_lie_about_their_size_are_rejected(zstd_file):
    import numcodecs

    right = dict(members_of(zstd_file))["embedding/c/1/0/0"]
    too_small = bytes(numcodecs.Zstd().encode(bytes(100)))
    too_big = bytes(numcodecs.Zstd().encode(bytes(64 * 64 * 2)))
    assert_rejected(_with_chunk(zstd_file, too_small), "declares 100 bytes of content")
    assert_rejected(_with_chunk(zstd_file, too_big), "declares 8192 bytes")
    assert_rejected(_with_chunk(zstd_file, b"not zstd at all"), "not a plain zstd frame")
    assert_rejected(_with_chunk(zstd_file, right[:-3]), "damaged zstd data")
    assert_rejected(_with_chunk(zstd_file, right[:6] + bytes(len(right) - 6)), "zstd")
    assert_rejected(_with_chunk(zstd_file, right + bytes(10_000)), "more than zstd can need")
    # a frame declaring 2**40 bytes of content: refused from the header, nothing allocated
    header = b"\x28\xb5\x2f\xfd" + bytes([0xC0 | 0x20]) + (2**40).to_bytes(8, "little")
    tracemalloc.start()
    try:
        assert_rejected(_with_chunk(zstd_file, header + bytes(20)), "declares 1099511627776")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@settings(max_examples=100, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4)
)
def test_random_damage_inside_zstd_chunks_is_a_format_error(zstd_file, flips):
    chunk = bytearray(dict(members_of(zstd_file))["embedding/c/1/0/0"])
    for position, mask in flips:
        chunk[position % len(chunk)] ^= mask
    works_or_format_error(_with_chunk(zstd_file, bytes(chunk)))


def test_a_huge_grid_of_absent_chunks_reads_in_time_bounded_by_stored_chunks(small_file):
    # 2**26 grid cells of which three are stored: reading everything must not visit each cell
    edited = _edit_array(
        small_file,
        shape=[2**26, 1, 1, 1],
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": [1, 1, 1, 1]}},
        data_type="uint8",
        fill_value=0,
    )
    edited = tamper(edited, metadata=_set("embedding/shape", [2**26, 1, 1, 1]))
    edited = tamper(edited, metadata=_set("embedding/dtype", "uint8"))

    def tiny_chunks(members):
        return [
            (
                name,
                bytes([7 + int(name.split("/")[2])])
                if name.startswith("embedding/c/")
                else payload,
            )
            for name, payload in members
        ]

    edited = tamper(edited, members=tiny_chunks)
    started = time.perf_counter()
    with open_nrep(edited) as reader:
        values = reader.read_array("embedding", (slice(None), 0, 0, 0))
        strided = reader.read_array("embedding", (slice(None, None, 3), 0, 0, 0))
    assert time.perf_counter() - started < 5.0
    assert values.shape == (2**26,) and strided.shape == (-(-(2**26) // 3),)
    assert values[:3].tolist() == [7, 8, 9] and not values[3:].any()
    assert strided[:2].tolist() == [7, 0]


def test_decoding_many_compressible_chunks_is_bounded_per_read(tmp_path):
    from nrep_helpers import make_metadata

    from neurep.formats import write_nrep

    zeros = np.zeros((16, 1 << 20), dtype=np.uint8)  # 16 chunks of 1 MiB that zstd shrinks
    path = tmp_path / "bomb.nrep"
    write_nrep(path, metadata=make_metadata(zeros), arrays={"embedding": zeros}, tensors={})
    assert path.stat().st_size < 20_000
    limits = ReadLimits(max_decoded_bytes=4 << 20)
    with open_nrep(path, limits=limits) as reader:
        assert reader.read_array("embedding", (slice(0, 3), 0)).tolist() == [0, 0, 0]
        with pytest.raises(ResourceLimitError, match="decodes more than"):
            reader.read_array("embedding", (slice(None), 0))  # 16 bytes out, 16 MiB decoded
