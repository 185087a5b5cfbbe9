"""The settings of a conversion and their hash: what makes two fits of one item the same.

:func:`fit_settings` fills in :func:`neurep.fit`'s defaults (so ``seed=0`` given or not is
the same setting), drops what does not change the result's meaning (``device``,
``progress``) and adds the ``.nrep`` format version; :func:`settings_hash` is the first
16 hex digits of the sha256 of its canonical JSON. A preset given by name is hashed by its
name (a newer neurep's retuned preset is still "the same settings"); a
:class:`neurep.fitting.Preset` object by all its fields. The neurep version is recorded
beside the hash in the index, not in it, so upgrading neurep refits nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from typing import Any

from neurep.errors import InputError

__all__ = ["NOT_HASHED", "fit_settings", "settings_hash"]

#: fit options that never change what is stored.
NOT_HASHED = frozenset({"device", "progress"})


def fit_settings(fit_options: dict[str, Any]) -> dict[str, Any]:
    """``fit_options`` (keyword arguments of :func:`neurep.fit`) as canonical JSON values.

    Raises:
        InputError: an option that neither :func:`neurep.fit` nor any modality takes.
    """
    from neurep import api
    from neurep.formats import FORMAT_VERSION

    parameters = inspect.signature(api.fit).parameters
    named = {
        name: parameter.default
        for name, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(fit_options) - set(named) - _read_options())
    if unknown:
        raise InputError(
            f"unknown fit option {', '.join(map(repr, unknown))}; neurep.fit takes "
            f"{', '.join(sorted(named))} and the modalities' read options "
            f"({', '.join(sorted(_read_options())) or 'none'})"
        )
    chosen = {**named, **fit_options}
    settings = {
        name: _canonical(value)
        for name, value in sorted(chosen.items())
        if name not in NOT_HASHED and value is not None
    }
    settings["format"] = FORMAT_VERSION
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    """16 hex digits identifying ``settings`` (from :func:`fit_settings`)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_options() -> set[str]:
    from neurep.modalities import registry

    return {option for adapter in registry.adapters() for option in adapter.read_options}


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON (tuples as lists, a Preset as its fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **_canonical(dataclasses.asdict(value))}
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"fit option value {value!r:.60} is not a plain value (number, text, ...)")
