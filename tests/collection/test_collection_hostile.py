"""Damaged or forged collection files raise FormatError naming the file, never decode.

Each forgery that the manifest's SHA-256 would catch on its own is re-listed with the forged
file's true SHA-256 and size, so that the check under test is the only one that can fire.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from collection_helpers import sha256_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.collection import NeuralCollection
from neurep.collection._files import (
    ModelReader,
    ShardReader,
    open_model,
    open_shard,
    write_model,
    write_shard,
)
from neurep.formats._source import ByteSource


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "collection.json").read_text())


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "collection.json").write_text(json.dumps(manifest))


def relist(folder: Path, file: str) -> None:
    """Make the manifest's entry of ``file`` match the file as it now is."""
    manifest = read_manifest(folder)
    entries = [manifest["model"], *manifest["shards"]]
    (entry,) = [e for e in entries if e["file"] == file]
    entry["sha256"] = sha256_of(folder / file)
    entry["nbytes"] = (folder / file).stat().st_size
    write_manifest(folder, manifest)


def shard_parts(path: Path) -> tuple[dict, np.ndarray]:
    reader = ShardReader(ByteSource.open(path.read_bytes(), str(path)), _limits())
    return dict(reader.metadata), reader.read_array("embeddings")


def _limits():
    from neurep.formats._limits import DEFAULT_LIMITS

    return DEFAULT_LIMITS


# -- damaged bytes ---------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shard=st.integers(0, 3), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_a_flipped_byte_in_a_shard_is_caught(built, shard, where, bit):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(shutil.copytree(built.folder, Path(scratch) / "col"))
        path = folder / "shards" / f"{shard:06d}.nreps"
        data = bytearray(path.read_bytes())
        data[int(where * len(data))] ^= 1 << bit
        path.write_bytes(bytes(data))
        col = NeuralCollection(folder)
        with pytest.raises(neurep.FormatError, match=rf"{shard:06d}\.nreps.*SHA-256"):
            col[shard * 8].decode()
        with pytest.raises(neurep.FormatError, match=rf"{shard:06d}\.nreps"):
            col.record(shard * 8)
        # the other shards still read
        other = (shard + 1) % 4
        assert np.asarray(col[other * 8].decode()).shape == (16, 16, 3)


def test_a_shortened_shard_is_caught_by_its_size(collection_copy):
    path = collection_copy / "shards" / "000001.nreps"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(neurep.FormatError, match=r"000001\.nreps: .* bytes, the manifest says"):
        neurep.load(collection_copy, 9)


def test_a_truncated_model_file_is_refused(collection_copy):
    path = collection_copy / "model.nrepm"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(neurep.FormatError, match=r"model\.nrepm"):
        neurep.load(collection_copy, 0)
    relist(collection_copy, "model.nrepm")  # now only the ZIP reader can tell
    with pytest.raises(neurep.FormatError, match=r"model\.nrepm"):
        _ = NeuralCollection(collection_copy).model


# -- forged shards ---------------------------------------------------------------------------
def test_a_shard_naming_another_model_is_refused(collection_copy):
    path = collection_copy / "shards" / "000002.nreps"
    metadata, codes = shard_parts(path)
    assert metadata["model_sha256"] == read_manifest(collection_copy)["model"]["sha256"]
    metadata["model_sha256"] = "0" * 64
    write_shard(path, metadata, codes)
    relist(collection_copy, "shards/000002.nreps")
    col = NeuralCollection(collection_copy)
    with pytest.raises(neurep.FormatError, match=r"000002\.nreps: made for the model with SHA-256"):
        col[16]
    with pytest.raises(neurep.FormatError, match="0" * 64):
        col.embeddings()
    assert np.asarray(col[8].decode()).shape == (16, 16, 3)  # the other shards are fine


def test_a_shard_of_another_collection_is_refused(collection_copy, other_folder):
    shutil.copyfile(
        other_folder / "shards" / "000000.nreps", collection_copy / "shards" / "x.nreps"
    )
    manifest = read_manifest(collection_copy)
    manifest["shards"][3] = {"file": "shards/x.nreps", "sha256": "0" * 64, "nbytes": 0, "items": 4}
    write_manifest(collection_copy, manifest)
    relist(collection_copy, "shards/x.nreps")
    col = NeuralCollection(collection_copy)
    assert len(col) == 28
    with pytest.raises(neurep.FormatError, match=r"x\.nreps: made for the model"):
        col[25]


def test_a_shard_whose_item_count_differs_from_the_manifest_is_refused(collection_copy):
    manifest = read_manifest(collection_copy)
    manifest["shards"][1]["items"] = 7
    write_manifest(collection_copy, manifest)
    with pytest.raises(neurep.FormatError, match=r"000001\.nreps: 8 items, the manifest says 7"):
        NeuralCollection(collection_copy)[8]


def test_a_shard_of_the_wrong_embedding_shape_is_refused(collection_copy):
    path = collection_copy / "shards" / "000000.nreps"
    metadata, codes = shard_parts(path)
    write_shard(path, metadata, np.concatenate([codes, codes], axis=1))  # 4 channels, not 2
    relist(collection_copy, "shards/000000.nreps")
    with pytest.raises(neurep.FormatError, match=r"000000\.nreps: embeddings of shape \[4, 2, 2\]"):
        NeuralCollection(collection_copy)[0]


def test_a_shard_with_a_short_column_is_refused(collection_copy):
    path = collection_copy / "shards" / "000000.nreps"
    metadata, codes = shard_parts(path)
    metadata["quality"]["psnr"] = metadata["quality"]["psnr"][:-1]
    with pytest.raises(neurep.FormatError, match="'psnr' has 7 entries for 8 items"):
        write_shard(path, metadata, codes)  # the writer reads back what it wrote


# -- the manifest ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "collection.json"),
        ("[]", "collection.json: invalid collection manifest"),
        ('{"format": "neurep"}', "collection.json: invalid collection manifest"),
    ],
)
def test_a_broken_manifest_is_refused(collection_copy, text, fragment):
    (collection_copy / "collection.json").write_text(text)
    with pytest.raises(neurep.FormatError, match=fragment):
        neurep.load(collection_copy)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m.update(format="neurep-collection-shard"), "at format"),
        (lambda m: m.update(format_version="1.x"), "at format_version"),
        (lambda m: m["model"].update(sha256="ABC"), "at model/sha256"),
        (lambda m: m["shards"][0].update(items=0), "at shards/0/items"),
        (lambda m: m["shards"][1].update(file="/etc/passwd"), "at shards/1/file"),
        (lambda m: m["shards"][1].update(file="shards/000000.nreps"), "names a file twice"),
        (lambda m: m["shards"][1].update(file="collection.json"), "names a file twice"),
        (lambda m: m.pop("model"), "collection.json"),
    ],
)
def test_an_invalid_manifest_is_refused(collection_copy, change, fragment):
    manifest = read_manifest(collection_copy)
    change(manifest)
    write_manifest(collection_copy, manifest)
    with pytest.raises(neurep.FormatError, match=fragment):
        neurep.load(collection_copy)


def test_a_newer_major_version_is_unsupported_not_damaged(collection_copy):
    manifest = read_manifest(collection_copy)
    manifest.update(format_version="2.0", model="described differently in 2.0")
    write_manifest(collection_copy, manifest)
    with pytest.raises(neurep.UnsupportedVersionError, match=r"collection format 2\.0.*upgrade"):
        neurep.load(collection_copy)


def test_a_missing_file_is_named(collection_copy):
    (collection_copy / "shards" / "000003.nreps").unlink()
    col = NeuralCollection(collection_copy)
    assert np.asarray(col[0].decode()).shape == (16, 16, 3)
    with pytest.raises(neurep.FormatError, match=r"shard 'shards/000003\.nreps', missing"):
        col[24]
    (collection_copy / "model.nrepm").unlink()
    with pytest.raises(neurep.FormatError, match=r"model file 'model\.nrepm', missing"):
        NeuralCollection(collection_copy)[0]


@pytest.mark.parametrize("listed", ["model", "shard"])
def test_a_manifest_path_out_of_the_folder_is_refused(collection_copy, listed):
    # a valid file of this very collection, outside the folder, listed with its true hash
    # as "../...": only a rule on the path itself can refuse it
    manifest = read_manifest(collection_copy)
    entry = manifest["model"] if listed == "model" else manifest["shards"][3]
    outside = collection_copy.parent / Path(entry["file"]).name
    shutil.copyfile(collection_copy / entry["file"], outside)
    entry["file"] = f"../{outside.name}"
    write_manifest(collection_copy, manifest)
    with pytest.raises(neurep.FormatError, match=r"collection\.json"):
        NeuralCollection(collection_copy)[24]


# -- forged model files ----------------------------------------------------------------------
def model_parts(folder: Path) -> tuple[dict, dict]:
    path = folder / "model.nrepm"
    reader = open_model(path.read_bytes(), str(path))
    return dict(reader.metadata), reader.read_tensors()


def test_model_weights_that_do_not_match_the_description_are_refused(collection_copy):
    metadata, tensors = model_parts(collection_copy)
    metadata["decoder"] = json.loads(json.dumps(metadata["decoder"]))
    metadata["decoder"]["configuration"]["widths"] = [96, 32]
    write_model(collection_copy / "model.nrepm", metadata, tensors)
    relist(collection_copy, "model.nrepm")
    with pytest.raises(
        neurep.FormatError, match=r"model\.nrepm: the decoder weights do not match its description"
    ):
        _ = NeuralCollection(collection_copy).model


def test_model_weights_missing_a_tensor_are_refused(collection_copy):
    metadata, tensors = model_parts(collection_copy)
    name = next(k for k in tensors if k.startswith("encoder.") and k.endswith("bias"))
    del tensors[name]
    try:
        write_model(collection_copy / "model.nrepm", metadata, tensors)
    except neurep.FormatError:
        return  # refused on writing already: fine
    relist(collection_copy, "model.nrepm")
    with pytest.raises(neurep.FormatError, match=r"model\.nrepm: .*encoder"):
        _ = NeuralCollection(collection_copy).model


def test_a_model_with_non_finite_scale_or_wrong_code_map_is_refused(collection_copy):
    metadata, tensors = model_parts(collection_copy)
    metadata["embedding"] = {**metadata["embedding"], "scale": [1.0]}  # 1 scale, 2 channels
    write_model(collection_copy / "model.nrepm", metadata, tensors)
    relist(collection_copy, "model.nrepm")
    with pytest.raises(neurep.FormatError, match=r"model\.nrepm: the code map needs 2 scales"):
        _ = NeuralCollection(collection_copy).model


def test_a_shard_listed_as_the_model_is_refused(collection_copy):
    manifest = read_manifest(collection_copy)
    shard = manifest["shards"].pop(0)
    manifest["model"] = {k: shard[k] for k in ("file", "sha256", "nbytes")}
    write_manifest(collection_copy, manifest)
    with pytest.raises(neurep.FormatError, match=r"000000\.nreps: not a collection model file"):
        _ = NeuralCollection(collection_copy).model


def test_the_model_file_read_as_a_shard_is_refused(built):
    data = (built.folder / "model.nrepm").read_bytes()
    with pytest.raises(neurep.FormatError, match="not a collection shard file"):
        open_shard(data, "m.nreps")
    assert isinstance(open_model(data, "m.nrepm"), ModelReader)
