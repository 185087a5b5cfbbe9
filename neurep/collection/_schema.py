"""The JSON schemas of a collection's three kinds of file, and their validation.

A collection's files are untrusted input like any ``.nrep``: every document is parsed with
the bounded JSON reader and checked against these schemas before anything is built from it.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from neurep.errors import FormatError

MANIFEST_FORMAT = "neurep-collection"
MODEL_FORMAT = "neurep-collection-model"
SHARD_FORMAT = "neurep-collection-shard"
FORMAT_VERSION = "1.0"
#: Longest item name (UTF-8 characters) and most items a shard may hold.
MAX_NAME_LENGTH = 1024
MAX_SHARD_ITEMS = 1 << 20

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNT = {"type": "integer", "minimum": 0}
_SIZES = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}
# A file in the folder or one subfolder; no part may start with a dot (no "..", no hidden files)
_FILE = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?$",
    "maxLength": 255,
}
_VERSION = {"type": "string", "pattern": r"^[0-9]{1,4}\.[0-9]{1,4}$"}
_CONFIG = {"type": "object", "required": ["name", "configuration"]}
_COMMON = {"format_version": _VERSION, "created": {"type": "string"}, "library": {"type": "object"}}

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "format_version", "model", "shards"],
    "properties": {
        **_COMMON,
        "format": {"const": MANIFEST_FORMAT},
        "model": {
            "type": "object",
            "required": ["file", "sha256", "nbytes"],
            "properties": {"file": _FILE, "sha256": _SHA256, "nbytes": _COUNT},
        },
        "shards": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["file", "sha256", "nbytes", "items"],
                "properties": {
                    "file": _FILE,
                    "sha256": _SHA256,
                    "nbytes": _COUNT,
                    "items": {"type": "integer", "minimum": 1, "maximum": MAX_SHARD_ITEMS},
                },
            },
        },
    },
}

MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "format",
        "format_version",
        "modality",
        "signal",
        "decoder",
        "encoder",
        "embedding",
        "weights",
    ],
    "properties": {
        **_COMMON,
        "format": {"const": MODEL_FORMAT},
        "modality": _CONFIG,
        "signal": {
            "type": "object",
            "required": ["item_shape", "loss"],
            "properties": {"item_shape": _SIZES, "loss": {"enum": ["mse", "bce"]}},
        },
        "decoder": _CONFIG,
        "encoder": _CONFIG,
        "embedding": {
            "type": "object",
            "required": ["item_shape", "scale", "offset"],
            "properties": {
                "item_shape": _SIZES,
                "scale": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
                "offset": {"type": "array", "items": {"type": "number"}},
            },
        },
        "weights": {
            "type": "object",
            "required": ["member", "sha256", "nbytes", "quantization"],
            "properties": {
                "member": {"const": "weights.safetensors"},
                "sha256": _SHA256,
                "nbytes": _COUNT,
                "quantization": {
                    "type": "object",
                    "required": ["decoder", "encoder"],
                    "properties": {"decoder": {"type": "object"}, "encoder": {"type": "object"}},
                },
            },
        },
        "fit": {"type": "object"},
        "items": {
            "type": "object",
            "required": ["size", "fit_to"],
            "properties": {
                "size": {**_SIZES, "minItems": 2, "maxItems": 2},
                "fit_to": {"enum": ["resize", "crop"]},
            },
        },
    },
}

SHARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "format_version", "model_sha256", "items", "names", "quality"],
    "properties": {
        **_COMMON,
        "format": {"const": SHARD_FORMAT},
        "model_sha256": _SHA256,
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_SHARD_ITEMS},
        "names": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
        },
        "item_modality": {
            "type": "object",
            "additionalProperties": {"type": "array"},
        },
        "quality": {
            "type": "object",
            "required": ["psnr", "ms_ssim"],
            "properties": {
                "psnr": {"type": "array", "items": {"type": ["number", "null"]}},
                "ms_ssim": {"type": "array", "items": {"type": ["number", "null"]}},
            },
        },
        "refine_steps": {"type": "array", "items": _COUNT},
    },
}


@functools.cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = {"manifest": MANIFEST_SCHEMA, "model": MODEL_SCHEMA, "shard": SHARD_SCHEMA}[kind]
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate(document: Any, kind: str, *, source: str) -> dict[str, Any]:
    """``document`` if it satisfies the ``kind`` schema ("manifest", "model", "shard");
    else FormatError naming the first problem and where it is."""
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise FormatError(
            f"{source}: invalid collection {kind} metadata at {where}: {error.message}"
        )
    return document
