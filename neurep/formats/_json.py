"""Bounded, strict JSON parsing for documents found inside a ``.nrep`` file.

Strict: UTF-8 only, no duplicate keys, no NaN/Infinity, no numbers that overflow to infinity.
Bounded: the document size, nesting depth, number of values and string lengths are checked
against :class:`ReadLimits`, so a hostile document cannot make later validation expensive.
"""

from __future__ import annotations

import json
import math
from typing import Any

from neurep.errors import FormatError, ResourceLimitError
from neurep.formats._limits import ReadLimits


class _DuplicateKeyError(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(f"duplicate key {key[:100]!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(
    data: bytes, *, source: str, what: str, limits: ReadLimits, max_nodes: int | None = None
) -> Any:
    """Parse ``data`` (the JSON document ``what`` inside file ``source``) within ``limits``.

    ``max_nodes`` overrides ``limits.max_json_nodes`` for documents that are not
    schema-validated (the safetensors header).
    """
    if len(data) > limits.max_metadata_bytes:
        raise ResourceLimitError(
            f"{source}: {what} is {len(data)} bytes, more than "
            f"ReadLimits.max_metadata_bytes={limits.max_metadata_bytes}"
        )
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise ResourceLimitError(f"{source}: {what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise FormatError(f"{source}: {what} is not valid JSON: {error}") from None
    max_nodes = limits.max_json_nodes if max_nodes is None else max_nodes
    if not (len(text) <= min(max_nodes, limits.max_string_chars) and _within_depth(value, limits)):
        check_json_bounds(value, source=source, what=what, limits=limits, max_nodes=max_nodes)
    return value


def _within_depth(value: Any, limits: ReadLimits) -> bool:
    """Whether a parsed document of at most ``max_json_nodes`` and ``max_string_chars``
    characters is within bounds: such a text cannot hold more values (each takes a
    character) nor a longer string, so only the nesting depth and numbers that overflowed
    to infinity are left to check; containers are walked, leaves looked at only by type.
    False sends the document to :func:`check_json_bounds`, which names the problem."""
    if type(value) not in (dict, list):
        return not (type(value) is float and not math.isfinite(value))
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth >= limits.max_json_depth:
            return False
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float and not math.isfinite(child):
                return False
    return True


def check_json_bounds(
    value: Any, *, source: str, what: str, limits: ReadLimits, max_nodes: int | None = None
) -> None:
    """Check depth, value count, string lengths and finiteness of a parsed JSON value.

    Iterative (no recursion), and stops at the first value past a limit.
    """
    max_nodes = limits.max_json_nodes if max_nodes is None else max_nodes
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise ResourceLimitError(
                f"{source}: {what} has more than {max_nodes} values "
                "(ReadLimits.max_json_nodes / max_tensors)"
            )
        if isinstance(item, dict):
            if depth >= limits.max_json_depth:
                raise ResourceLimitError(
                    f"{source}: {what} is nested deeper than "
                    f"ReadLimits.max_json_depth={limits.max_json_depth}"
                )
            for key, child in item.items():
                if not isinstance(key, str):
                    raise FormatError(f"{source}: {what} has a non-string key {key!r}")
                _check_string(key, source, what, limits)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth >= limits.max_json_depth:
                raise ResourceLimitError(
                    f"{source}: {what} is nested deeper than "
                    f"ReadLimits.max_json_depth={limits.max_json_depth}"
                )
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_string(item, source, what, limits)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise FormatError(
                    f"{source}: {what} holds a non-finite number; JSON has none "
                    "(store null for an infinite PSNR)"
                )
        elif item is not None and not isinstance(item, bool | int):
            raise FormatError(
                f"{source}: {what} holds a {type(item).__name__}, which is not a JSON value"
            )


def _check_string(text: str, source: str, what: str, limits: ReadLimits) -> None:
    if len(text) > limits.max_string_chars:
        raise ResourceLimitError(
            f"{source}: {what} has a string of {len(text)} characters, more than "
            f"ReadLimits.max_string_chars={limits.max_string_chars}"
        )
