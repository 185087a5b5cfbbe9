"""The atheris fuzz target stays runnable: its seeds are valid and its harness accepts them."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import pathlib
import zipfile

import pytest

pytest.importorskip("atheris")

from neurep.errors import FormatError
from neurep.formats import open_nrep

FUZZ_TARGET = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_nrep.py"
GOLDEN_1_1 = sorted((FUZZ_TARGET.parents[1] / "tests" / "golden" / "files").glob("*_v1_1.nrep"))


@pytest.fixture(scope="module")
def fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_nrep", FUZZ_TARGET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seeds(fuzz_module, tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    fuzz_module.write_seeds(str(directory))
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _root_metadata(data: bytes) -> tuple[dict, int]:
    """The "neurep" metadata and the compression method of the root zarr.json."""
    with open_nrep(data) as reader:
        metadata = reader.metadata
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return metadata, archive.getinfo("zarr.json").compress_type


def test_fuzz_seeds_are_valid_files_and_the_harness_accepts_damaged_ones(fuzz_module, seeds):
    assert len(seeds) >= 4
    for data in seeds.values():
        with open_nrep(data) as reader:
            assert reader.read_tensors()
        fuzz_module.test_one_input(data)  # only FormatError may be swallowed; others propagate
        for cut in range(0, len(data), 97):
            fuzz_module.test_one_input(data[:cut])


def test_the_seeds_cover_format_1_1s_compact_layout(seeds):
    assert len(GOLDEN_1_1) >= 3
    for golden in GOLDEN_1_1:  # the golden 1.1 files are seeds, byte for byte
        assert seeds[f"seed-golden-{golden.name}"] == golden.read_bytes()
    layouts, embedding_records = [], []
    for data in seeds.values():
        metadata, compression = _root_metadata(data)
        assert metadata["format_version"] in ("1.1", "1.2", "1.3")
        assert compression == zipfile.ZIP_DEFLATED
        weights, embedding = (metadata[k].get("quantization") for k in ("weights", "embedding"))
        if weights is not None:
            assert weights["version"] == 2
            layouts.append((weights["precision"], weights["layout"]))
        if embedding is not None:
            assert embedding["version"] == 2
            embedding_records.append(embedding)
    assert len(layouts) >= 3 + len(GOLDEN_1_1)
    letters = set("".join(layout for _, layout in layouts))
    assert {"t", "0", "1", "h", "r"} <= letters  # per tensor, per channel on both axes, casts
    assert {p for p, _ in layouts} >= {"int5", "int8", "float16"}
    assert any("axis" in e for e in embedding_records)
    assert any(e["precision"].startswith("float") for e in embedding_records)
    with open_nrep(seeds["seed-compact-int5.nrep"]) as reader:
        assert set(reader.read_tensors()) == {"codes", "params", "float16", "raw_int64"}
    records = [_root_metadata(data)[0]["weights"].get("quantization") for data in seeds.values()]
    coded = [record for record in records if record and "codec" in record]
    # ans streams: a seed of the harness, two golden 1.2 files and two predicted 1.3 ones
    assert len(coded) >= 5
    assert {"laplace", "log_quadratic"} <= {r["codec"]["configuration"]["model"] for r in coded}


def test_rezipping_keeps_each_members_compression(fuzz_module, seeds):
    data = seeds["seed-golden-image_rgb_uint8_v1_1.nrep"]
    members = fuzz_module._members(data)
    methods = {name: method for name, _, method in members}
    assert methods["zarr.json"] == methods["embedding/zarr.json"] == zipfile.ZIP_DEFLATED
    assert methods["weights.safetensors"] == zipfile.ZIP_STORED
    again = fuzz_module._members(fuzz_module._zip(members))
    assert again == members
    with open_nrep(fuzz_module._zip(members)) as reader, open_nrep(data) as original:
        assert reader.metadata == original.metadata


def test_the_checksum_fix_lets_a_mutated_weights_member_through(fuzz_module, seeds):
    members = fuzz_module._members(seeds["seed-compact-int8.nrep"])
    tampered = [
        (n, p[:-1] + bytes([p[-1] ^ 1]) if n == "weights.safetensors" else p, c)
        for n, p, c in members
    ]
    with pytest.raises(FormatError), open_nrep(fuzz_module._zip(tampered)) as reader:
        reader.read_tensors()
    fixed = fuzz_module._fix_weights_checksum(tampered)
    assert [c for _, _, c in fixed] == [c for _, _, c in members]
    root = json.loads(dict((n, p) for n, p, _ in fixed)["zarr.json"])
    weights_bytes = dict((n, p) for n, p, _ in tampered)["weights.safetensors"]
    assert root["attributes"]["neurep"]["weights"]["sha256"] == (
        hashlib.sha256(weights_bytes).hexdigest()
    )
    with open_nrep(fuzz_module._zip(fixed)) as reader:
        assert reader.read_tensors()
