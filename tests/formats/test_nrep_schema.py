"""The metadata schema: shipped, valid, documented, and bounded."""

from __future__ import annotations

import copy
import importlib.resources
import json
import pathlib
import time

import jsonschema
import pytest
from nrep_helpers import small_inputs

from neurep.errors import FormatError, UnsupportedVersionError
from neurep.formats import metadata_schema, validate_metadata

FORMAT_MD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


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
    newer["format_version"] = "1.2"
    for key in ("modality", "signal", "decoder", "embedding", "weights"):
        newer[key]["added_in_1_1"] = True
    with pytest.warns(UserWarning, match="signal/added_in_1_1"):
        validate_metadata(newer, source="m")
