"""The neurep metadata: JSON Schema validation and the version policy.

Version policy (format ``MAJOR.MINOR``, this code writes :data:`FORMAT_VERSION`):

- ``format`` other than ``"neurep"`` → :class:`FormatError`.
- a newer MAJOR → :class:`UnsupportedVersionError` (checked before the schema, since a future
  major may change the layout entirely); MAJOR 0 → :class:`FormatError`.
- the same MAJOR and a newer MINOR → read; keys this version does not know are dropped from
  validation with a :class:`NrepFormatWarning` (they stay in ``reader.metadata``).
- the same MAJOR and MINOR → validated strictly: unknown keys are errors.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
import warnings
from collections.abc import Callable
from typing import Any, Final

import fastjsonschema
import jsonschema

from neurep.errors import FormatError, UnsupportedVersionError

FORMAT_NAME: Final = "neurep"
FORMAT_VERSION: Final = "1.3"
FORMAT_MAJOR, FORMAT_MINOR = (int(part) for part in FORMAT_VERSION.split("."))
_VERSION_PATTERN = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")

# Objects whose keys are fixed in this version (path of keys from the metadata root).
_CLOSED_OBJECTS: Final[tuple[tuple[str, ...], ...]] = (
    (),
    ("modality",),
    ("signal",),
    ("decoder",),
    ("encoder",),
    ("embedding",),
    ("weights",),
)


class NrepFormatWarning(UserWarning):
    """A ``.nrep`` file is readable but carries something this version does not understand."""


@functools.cache
def metadata_schema() -> dict[str, Any]:
    """The JSON Schema of the metadata (``neurep/formats/metadata.schema.json``)."""
    text = importlib.resources.files("neurep.formats").joinpath("metadata.schema.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _structure_schema() -> dict[str, Any]:
    """The schema with its free-form values left to :func:`_check_free`: jsonschema costs
    tens of microseconds per value when it recurses through ``$defs/free_value``, and
    :func:`_check_free` enforces the same bounds in well under one."""
    schema = copy.deepcopy(metadata_schema())
    schema["$defs"]["free_value"] = {}
    schema["$defs"]["free_object"] = {"type": "object"}
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """The reference validator of the fixed structure (jsonschema, draft 2020-12)."""
    validator_class = jsonschema.validators.validator_for(metadata_schema())
    validator_class.check_schema(metadata_schema())
    return validator_class(_structure_schema())


@functools.cache
def _fast_check() -> Callable[[Any], Any]:
    """The same structure schema compiled to Python by fastjsonschema, about 6x faster than
    jsonschema's walk (a data loader opens thousands of files). Only its *valid* verdict
    is used; anything it rejects goes to :func:`_validator`, which decides and words the
    error. No defaults are filled in and formats are not checked, as in :func:`_validator`
    (tests/formats/test_metadata_fast_check.py holds the two to the same verdicts)."""
    return fastjsonschema.compile(_structure_schema(), use_default=False, use_formats=False)


def _passes_fast_check(metadata: Any) -> bool:
    try:
        _fast_check()(metadata)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@functools.cache
def _free_value_bounds() -> tuple[int, int, int, int]:
    free = metadata_schema()["$defs"]["free_value"]
    return (
        free["maxLength"],
        free["maxItems"],
        free["maxProperties"],
        free["propertyNames"]["maxLength"],
    )


def _free_form_values(metadata: dict[str, Any]) -> list[tuple[str, Any]]:
    """(location, value) of every free-form object of the metadata."""
    found = []
    for component in ("modality", "decoder", "encoder"):
        node = metadata.get(component)
        if isinstance(node, dict) and "configuration" in node:
            found.append((f"{component}/configuration", node["configuration"]))
    for parent in ("embedding", "weights"):
        node = metadata.get(parent)
        if isinstance(node, dict) and "quantization" in node:
            found.append((f"{parent}/quantization", node["quantization"]))
    if "fit" in metadata:
        found.append(("fit", metadata["fit"]))
    if isinstance(metadata.get("quality"), dict):
        found.extend(
            (f"quality/{key}", value)
            for key, value in metadata["quality"].items()
            if key not in ("psnr", "ms_ssim")
        )
    return found


def _check_free(value: Any, location: str, source: str) -> None:
    """Enforce the bounds of ``$defs/free_value`` on ``value`` and everything inside it."""
    max_chars, max_items, max_keys, _ = _free_value_bounds()
    try:
        found = _free_problem(value, _free_value_bounds())
    except RecursionError:  # only for a document whose depth no parser bounded
        raise FormatError(f"{source}: invalid metadata at {location}: nested too deeply") from None
    if found is not None:
        parts, problem = found
        path = "/".join(str(part) for part in [location, *reversed(parts)])
        raise FormatError(
            f"{source}: invalid metadata at {path}: {problem} (limits: strings "
            f"{max_chars} characters, lists {max_items} items, objects {max_keys} keys)"
        )


def _free_problem(item: Any, bounds: tuple[int, int, int, int]) -> tuple[list, str] | None:
    """None, or (the path to the first value past ``bounds``, innermost first; what is
    wrong). Recursion is bounded: the document's depth was checked when it was parsed."""
    max_chars, max_items, max_keys, max_key_chars = bounds
    kind = type(item)
    if kind is str:
        return ([], f"is a string of {len(item)} characters") if len(item) > max_chars else None
    if kind is list:
        if len(item) > max_items:
            return [], f"is a list of {len(item)} items"
        children = enumerate(item)
    elif kind is dict:
        if len(item) > max_keys:
            return [], f"has {len(item)} keys"
        for key in item:
            if len(key) > max_key_chars:
                return [], f"has a key of {len(key)} characters"
        children = item.items()
    else:
        return None
    for where, child in children:
        if type(child) in (str, list, dict):
            found = _free_problem(child, bounds)
            if found is not None:
                found[0].append(where)
                return found
    return None


def validate_metadata(metadata: Any, *, source: str) -> dict[str, Any]:
    """Check the format name, the version policy and the schema; return the metadata.

    ``source`` names the file in error messages.
    """
    if not isinstance(metadata, dict):
        raise FormatError(f"{source}: the 'neurep' metadata is not a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise FormatError(
            f"{source}: not a neurep file: metadata 'format' is {metadata.get('format')!r}, "
            f"expected {FORMAT_NAME!r}"
        )
    version = metadata.get("format_version")
    match = _VERSION_PATTERN.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise FormatError(
            f"{source}: metadata 'format_version' is {version!r}, expected 'MAJOR.MINOR'"
        )
    major, minor = int(match[1]), int(match[2])
    if major > FORMAT_MAJOR:
        raise UnsupportedVersionError(
            f"{source}: written in .nrep format {version}, but this neurep reads format "
            f"{FORMAT_MAJOR}.x only; upgrade neurep (pip install -U neurep)"
        )
    if major < FORMAT_MAJOR:
        raise FormatError(f"{source}: .nrep format {version} predates format 1.0 and is not read")
    checked = metadata
    if minor > FORMAT_MINOR:
        checked, unknown = _without_unknown_keys(metadata)
        if unknown:
            warnings.warn(
                NrepFormatWarning(
                    f"{source}: written in .nrep format {version} (newer than {FORMAT_VERSION}); "
                    f"ignoring metadata keys this neurep does not know: {', '.join(unknown)}"
                ),
                stacklevel=3,
            )
    error = (
        None
        if _passes_fast_check(checked)
        else jsonschema.exceptions.best_match(_validator().iter_errors(checked))
    )
    if error is None:
        for location, value in _free_form_values(checked):
            _check_free(value, location, source)
    if error is not None:
        location = "/".join(str(part) for part in error.absolute_path) or "(root)"
        message = error.message if len(error.message) < 300 else error.message[:300] + "..."
        raise FormatError(f"{source}: invalid metadata at {location}: {message}")
    return metadata


def _without_unknown_keys(metadata: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``metadata`` without the keys the schema of this version does not define."""
    schema = metadata_schema()
    checked = copy.deepcopy(metadata)
    unknown: list[str] = []
    for path in _CLOSED_OBJECTS:
        node: Any = checked
        node_schema: dict[str, Any] = schema
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
            node_schema = schema["properties"][key]
        if not isinstance(node, dict):
            continue
        known = _known_keys(node_schema, schema)
        for key in [key for key in node if key not in known]:
            unknown.append("/".join((*path, key)))
            del node[key]
    return checked, unknown


def _known_keys(node_schema: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    candidates = [node_schema, *node_schema.get("anyOf", [])]
    keys: set[str] = set()
    for candidate in candidates:
        ref = candidate.get("$ref", "")
        if ref.startswith("#/$defs/"):
            candidate = schema["$defs"][ref.removeprefix("#/$defs/")]
        keys.update(candidate.get("properties", {}))
    return keys
