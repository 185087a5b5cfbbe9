"""The metadata schema: shipped, valid, documented, and bounded."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import pathlib
import time
import zipfile

import jsonschema
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nrep_helpers import small_inputs

import neurep
from neurep.errors import FormatError, UnsupportedVersionError
from neurep.formats import metadata_schema, open_nrep, validate_metadata
from neurep.formats._compact import compact_array, compact_tensors
from neurep.formats.quantize import PRECISIONS, quantize_array, quantize_tensors

FORMAT_MD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "files"


def _complete() -> dict:
    metadata, _, _ = small_inputs()
    metadata = copy.deepcopy(metadata)
    metadata.update(
        format="neurep",
        format_version="1.0",
        created="2026-01-02T03:04:05Z",
        library={"neurep": "0.1.0", "torch": "2.13.0+cpu"},
    )
    metadata["weights"].update(member="weights.safetensors", sha256="ab" * 32, nbytes=10)
    return metadata


def test_the_schema_ships_as_package_data_and_is_a_valid_json_schema():
    text = importlib.resources.files("neurep.formats").joinpath("metadata.schema.json")
    schema = json.loads(text.read_text(encoding="utf-8"))
    assert schema == metadata_schema()
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_schema_field_is_documented_in_format_md():
    text = FORMAT_MD.read_text(encoding="utf-8")
    schema = metadata_schema()
    for key in schema["properties"]:
        assert f"`{key}" in text, key
    for parent in ("signal", "embedding", "weights"):
        for key in schema["properties"][parent]["properties"]:
            assert f"`{parent}.{key}`" in text, f"{parent}.{key}"
    for section in ("## 7. Decoder architectures", "## 8. Quantisation", "fuzz/fuzz_nrep.py"):
        assert section in text


def test_complete_metadata_validates_and_optional_parts_may_be_absent():
    validate_metadata(_complete(), source="m")
    minimal = _complete()
    for key in ("encoder", "fit", "quality"):
        del minimal[key]
    del minimal["embedding"]["quantization"]
    del minimal["weights"]["quantization"]
    validate_metadata(minimal, source="m")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["fit"].update(big=list(range(100_001))), "fit/big"),
        (lambda m: m["decoder"]["configuration"].update(s="x" * 65_537), "decoder/configuration/s"),
        (lambda m: m["fit"].update(x={f"k{i}": 0 for i in range(4_097)}), "fit/x: has 4097 keys"),
        (lambda m: m["fit"].update(x={"k" * 257: 0}), "fit/x: has a key of 257"),
        (lambda m: m["quality"].update(per_frame=[[0] * 100_001]), "quality/per_frame/0"),
        (lambda m: m["weights"].update(quantization={"s": "x" * 70_000}), "quantization/s"),
        (lambda m: m["library"].update({"bad name": "1"}), "library"),
        (lambda m: m.update(created="2026-01-02T03:04:05+02:00"), "created"),
        (lambda m: m["embedding"].update(shape=[1.5]), "embedding/shape/0"),
        (lambda m: m["embedding"].update(shape=[True]), "embedding/shape/0"),
        (lambda m: m["weights"].update(nbytes=-1), "weights/nbytes"),
        (lambda m: m["encoder"] is None and m.update(encoder={"name": "x"}), "encoder"),
    ],
)
def test_the_schema_bounds_free_form_objects_and_types(edit, match):
    metadata = _complete()
    edit(metadata)
    with pytest.raises(FormatError, match=match):
        validate_metadata(metadata, source="m")


def test_validating_the_largest_allowed_metadata_stays_fast():
    metadata = _complete()
    metadata["fit"]["per_frame"] = [{"psnr": 30.0, "i": i} for i in range(15_000)]
    started = time.perf_counter()
    validate_metadata(metadata, source="m")
    assert time.perf_counter() - started < 2.0


def test_version_policy():
    future = {"format": "neurep", "format_version": "3.1"}
    with pytest.raises(UnsupportedVersionError, match="upgrade neurep"):
        validate_metadata(future, source="m")
    with pytest.raises(FormatError, match="not a neurep file"):
        validate_metadata({**_complete(), "format": "NeuRep"}, source="m")
    with pytest.raises(FormatError, match=r"MAJOR\.MINOR"):
        validate_metadata({**_complete(), "format_version": "1.0.0"}, source="m")
    newer = {**_complete(), "format_version": "1.12", "novelty": 1}
    with pytest.warns(UserWarning, match="novelty"):
        assert validate_metadata(newer, source="m")["novelty"] == 1
    with pytest.raises(FormatError, match="novelty"):
        validate_metadata({**newer, "format_version": "1.0"}, source="m")


def test_a_newer_minor_may_add_keys_inside_every_closed_object():
    newer = _complete()
    newer["format_version"] = "1.4"
    for key in ("modality", "signal", "decoder", "embedding", "weights"):
        newer[key]["added_in_1_4"] = True
    with pytest.warns(UserWarning, match="signal/added_in_1_4"):
        validate_metadata(newer, source="m")


# --- quantisation records (qinfo): version 2 exactly, older ones still accepted ---------------


def _stored_metadata(path: pathlib.Path) -> dict:
    """The "neurep" attributes of a file's root zarr.json, read without neurep's reader."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("zarr.json"))["attributes"]["neurep"]


@functools.cache
def _full_validator() -> jsonschema.Draft202012Validator:
    """The shipped schema as it stands (free-form values included), without neurep's shortcuts."""
    return jsonschema.Draft202012Validator(metadata_schema())


def _accepts(metadata: dict) -> bool:
    """Whether the schema accepts ``metadata``; neurep's own validation must agree."""
    full = _full_validator().is_valid(metadata)
    try:
        validate_metadata(metadata, source="m")
    except FormatError:
        assert not full, "validate_metadata refused what the schema accepts"
        return False
    assert full, "validate_metadata accepted what the schema refuses"
    return True


@functools.cache
def _v1_1_golden() -> dict:
    metadata = _stored_metadata(GOLDEN / "image_rgb_uint8_v1_1.nrep")
    assert metadata["weights"]["quantization"]["version"] == 2
    assert metadata["embedding"]["quantization"]["version"] == 2
    return metadata


def _v2_metadata(weights: dict | None = None, embedding: dict | None = None) -> dict:
    """The int8 1.1 golden file's metadata, optionally with other quantisation records."""
    metadata = copy.deepcopy(_v1_1_golden())
    if weights is not None:
        metadata["weights"]["quantization"] = weights
    if embedding is not None:
        metadata["embedding"]["quantization"] = embedding
    return metadata


GOLDEN_FILES = sorted(GOLDEN.glob("*.nrep"))


def test_the_golden_files_hold_both_record_versions():
    """So that the golden-file test below covers format 1.0's records and 1.1's version 2."""
    versions = set()
    for path in GOLDEN_FILES:
        metadata = _stored_metadata(path)
        for part in ("weights", "embedding"):
            versions.add((metadata["format_version"], metadata[part]["quantization"]["version"]))
    assert versions == {("1.0", 1), ("1.1", 2), ("1.2", 2), ("1.3", 2)}


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_every_golden_file_metadata_validates_against_the_schema(path):
    metadata = _stored_metadata(path)
    errors = [e.message for e in _full_validator().iter_errors(metadata)]
    assert errors == []
    assert _accepts(metadata)


@pytest.mark.parametrize("precision", [None, "float16", "int6"])
def test_a_freshly_fitted_and_saved_datum_validates(tmp_path, precision):
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    options = {} if precision is None else {"precision": precision}
    path = tmp_path / "tiny.nrep"
    neurep.fit(image, steps=3, progress=False, **options).save(path)
    metadata = _stored_metadata(path)
    assert metadata["format_version"] == "1.3"
    assert metadata["weights"]["quantization"]["version"] == 2
    assert [e.message for e in _full_validator().iter_errors(metadata)] == []
    assert _accepts(metadata)


def test_the_schema_names_exactly_the_precisions_quantize_knows():
    defs = metadata_schema()["$defs"]
    assert defs["quantization_precision"]["enum"] == list(PRECISIONS)
    assert set(defs["float_precision"]["enum"]) == {p for p in PRECISIONS if "float" in p}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_what_the_compact_writer_produces_validates(precision):
    """Every letter kind (casts, raw, per tensor, per channel on axes 0 and 1) at each precision."""
    g = torch.Generator().manual_seed(0)
    spread = torch.logspace(-3, 3, 16)  # channels of very different ranges: per channel pays
    state = {
        "conv.weight": torch.randn(16, 4, 3, 3, generator=g),
        "rows.weight": torch.randn(16, 64, generator=g) * spread[:, None],
        "up.weight": torch.randn(4, 16, 4, 4, generator=g) * spread[:, None, None],
        "conv.bias": torch.randn(16, generator=g),
        "steps": torch.tensor([3], dtype=torch.int64),
    }
    stored, qinfo = quantize_tensors(state, precision)
    _, weights = compact_tensors(stored, qinfo, list(state))
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((1, 4, 32, 32)) * np.logspace(-3, 3, 4)[:, None, None]
    embedding = compact_array(quantize_array(latent, precision, axis=1)[1])
    assert weights["version"] == embedding["version"] == 2
    cast = {"float32": "f", "float16": "h", "bfloat16": "b"}.get(precision)
    assert weights["layout"] == (cast * 4 + "r" if cast else "t01hr")
    assert ("scale" in embedding) == (cast is None)
    assert ("axis" in embedding) == (precision in ("int8", "int7", "int6", "int5"))
    assert _accepts(_v2_metadata(weights, embedding)), (weights, embedding)


@pytest.mark.parametrize(
    ("weights", "embedding"),
    [
        ({"version": 2, "precision": "int4", "layout": "01tfhbr9"}, None),
        ({"version": 2, "precision": "bfloat16", "layout": "fhbr"}, None),
        ({"version": 2, "precision": "float32", "layout": ""}, None),
        ({"version": 2.0, "precision": "int8", "layout": "t"}, None),
        ({"version": 2, "precision": "int8", "layout": "t" * 65_536}, None),
        (None, {"version": 2, "precision": "float16"}),
        (None, {"version": 2, "precision": "int5", "axis": 1, "scale": [1, 2], "offset": [0, 0]}),
    ],
)
def test_valid_version_2_records_are_accepted(weights, embedding):
    assert _accepts(_v2_metadata(weights, embedding))


_W = {"version": 2, "precision": "int8", "layout": "thth"}
_E = {"version": 2, "precision": "int8", "scale": [0.5], "offset": [-1.0]}


@pytest.mark.parametrize(
    ("part", "record", "location"),
    [
        ("weights", {**_W, "layout": "thxh"}, "weights/quantization/layout"),
        ("weights", {**_W, "layout": "thT"}, "weights/quantization/layout"),
        ("weights", {**_W, "layout": "th\n"}, "weights/quantization/layout"),
        ("weights", {**_W, "layout": "th\u00b2"}, "weights/quantization/layout"),  # '²'.isdigit()
        ("weights", {**_W, "layout": "t\u0663"}, "weights/quantization/layout"),  # Arabic-Indic 3
        ("weights", {**_W, "layout": "t" * 65_537}, "weights/quantization/layout"),
        ("weights", {**_W, "layout": ["t", "h"]}, "weights/quantization/layout"),
        ("weights", {**_W, "precision": "float16"}, "weights/quantization/layout"),  # t is affine
        ("weights", {**_W, "precision": "int3"}, "weights/quantization/precision"),
        ("weights", {**_W, "precision": "float64"}, "weights/quantization/precision"),
        ("weights", {**_W, "precision": "INT8"}, "weights/quantization/precision"),
        ("weights", {**_W, "tensors": {}}, "weights/quantization"),
        ("weights", {**_W, "bits": 8}, "weights/quantization"),
        ("weights", {"version": 2, "precision": "int8"}, "weights/quantization"),
        ("weights", {"version": 2, "layout": "tt"}, "weights/quantization"),
        ("embedding", {**_E, "axis": -1}, "embedding/quantization/axis"),
        ("embedding", {**_E, "axis": 32}, "embedding/quantization/axis"),
        ("embedding", {**_E, "scale": []}, "embedding/quantization/scale"),
        ("embedding", {**_E, "offset": ["0"]}, "embedding/quantization/offset/0"),
        ("embedding", {**_E, "precision": "int9"}, "embedding/quantization/precision"),
        ("embedding", {**_E, "precision": "float16"}, "embedding/quantization"),
        ("embedding", {**_E, "shape": [1, 16, 2, 3]}, "embedding/quantization"),
        (
            "embedding",
            {"version": 2, "precision": "int8", "scale": [1.0]},
            "embedding/quantization",
        ),
        ("embedding", {"version": 2, "scale": [1.0], "offset": [0.0]}, "embedding/quantization"),
    ],
)
def test_malformed_version_2_records_are_rejected_by_the_schema(part, record, location):
    metadata = _v2_metadata(**{part: record})
    assert not _full_validator().is_valid(metadata)
    with pytest.raises(FormatError, match=f"invalid metadata at {location}:"):
        validate_metadata(metadata, source="m")


_LETTERS = "fhbrt0123456789"


@settings(max_examples=300, deadline=None)
@given(
    precision=st.sampled_from([*PRECISIONS, "int3", "float64"]),
    layout=st.text(alphabet=_LETTERS + "xFHT -\n\u00b2\u0663\uff10", max_size=12),
)
def test_a_layout_is_valid_iff_its_precision_is_known_and_allows_every_letter(precision, layout):
    allowed = set(_LETTERS) if precision.startswith("int") else set("fhbr")
    metadata = _v2_metadata({"version": 2, "precision": precision, "layout": layout})
    assert _accepts(metadata) == (precision in PRECISIONS and set(layout) <= allowed)


def test_older_records_stay_free_form_but_a_version_2_claim_is_checked(tmp_path):
    """Format 1.0 records (no or other version) are the reader's to check; version 2 is exact."""
    v1 = _stored_metadata(GOLDEN / "image_gray_uint16_int8.nrep")["weights"]["quantization"]
    assert _accepts(_v2_metadata({**v1, "anything": [1, "x"]}))
    assert _accepts(_v2_metadata({"version": 3, "layout": "zzz"}))
    assert not _accepts(_v2_metadata({**v1, "version": 2}))
    # a 1.1 file whose layout holds a letter the compact reader cannot parse is refused on open
    source = GOLDEN / "image_gray_uint16_int5_v1_1.nrep"
    target = tmp_path / "hostile.nrep"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            payload = archive.read(info)
            if info.filename == "zarr.json":
                root = json.loads(payload)
                q = root["attributes"]["neurep"]["weights"]["quantization"]
                q["layout"] = "\u00b2" + q["layout"][1:]
                payload = json.dumps(root).encode()
            out.writestr(info, payload)
    with open_nrep(source) as reader:
        assert reader.metadata["weights"]["quantization"]["layout"][0] == "t"
    with pytest.raises(FormatError, match="weights/quantization/layout"):
        open_nrep(target)


@pytest.mark.parametrize("letter", ["\u00b2", "\u0663", "\uff13"])
def test_a_non_ascii_digit_in_a_layout_is_a_format_error_not_a_crash(letter: str) -> None:
    """str.isdigit() accepts these; int() of them fails or reads another axis."""
    from neurep.errors import FormatError
    from neurep.formats import dequantize_tensors, quantize_tensors

    state = {"w": torch.randn(3, 4)}
    stored, qinfo = quantize_tensors(state, "int8")
    stored, compact = compact_tensors(stored, qinfo, list(state))
    hostile = {**compact, "layout": letter}
    with pytest.raises(FormatError):
        dequantize_tensors(stored, hostile, {"w": ("float32", (3, 4))})
