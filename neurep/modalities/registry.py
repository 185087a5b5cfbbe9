"""The table of modality adapters and the rules that pick one for an object.

An adapter is chosen (as imageio chooses a plugin) by

1. the explicit ``modality=`` name;
2. else type / extension: the first adapter, in priority order, whose ``accepts(obj)`` is true;
3. else content: for an existing file, the first adapter whose ``sniff(path)`` is true.

Built-in modalities call :func:`register` at the bottom of their own module in this package
(``neurep/modalities/video.py``, ...): every public submodule is imported once, the first time
the table is used, so nothing else needs to change. Such modules must import their optional
dependencies lazily (inside functions) so that importing them never fails.

Code outside neurep plugs in the same way: subclass :class:`ModalityAdapter` and call
``neurep.modalities.register(MyAdapter)``; ``neurep.fit`` / ``save`` / ``load`` / ``decode``
then work as for the built-ins. A package can also name its adapter's module in the entry
point group ``neurep.modalities`` (pyproject: ``[project.entry-points."neurep.modalities"]
mine = "mypackage.adapter"``), so that its files load in a process that never imported it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
from pathlib import Path
from typing import Any

from neurep.errors import FormatError, InputError
from neurep.modalities._scaling import describe
from neurep.modalities.base import ModalityAdapter, is_path

DEFAULT_PRIORITY = 50
ENTRY_POINT_GROUP = "neurep.modalities"
_NOT_ADAPTER_MODULES = frozenset({"base", "registry"})

_adapters: dict[str, tuple[int, type[ModalityAdapter]]] = {}
_discovered = False


def register(adapter: type[ModalityAdapter], *, priority: int = DEFAULT_PRIORITY):
    """Add ``adapter`` to the table under ``adapter.name``; lower ``priority`` is tried first.

    Built-ins: image 10, array 90 (the fallback for any array). Re-registering the same class
    is a no-op; a different class under a taken name raises ValueError. Returns ``adapter``.
    """
    if not (isinstance(adapter, type) and issubclass(adapter, ModalityAdapter)):
        raise TypeError(f"{adapter!r} is not a ModalityAdapter subclass")
    name = getattr(adapter, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{adapter.__name__} must set a class attribute 'name'")
    existing = _adapters.get(name)
    if existing is not None and existing[1] is not adapter:
        raise ValueError(f"modality {name!r} is already registered to {existing[1].__name__}")
    _adapters[name] = (priority, adapter)
    return adapter


def unregister(name: str) -> None:
    """Remove the adapter called ``name`` (for tests and plugins that replace one)."""
    _adapters.pop(name, None)


def adapters() -> list[type[ModalityAdapter]]:
    """Registered adapters in the order they are tried (priority, then name)."""
    _discover()
    ordered = sorted(_adapters.items(), key=lambda item: (item[1][0], item[0]))
    return [adapter for _, (_, adapter) in ordered]


def names() -> list[str]:
    """Names of the registered modalities, in the order they are tried."""
    return [adapter.name for adapter in adapters()]


def get(name: str) -> type[ModalityAdapter]:
    """The adapter registered as ``name``; InputError listing the known names otherwise."""
    _discover()
    entry = _adapters.get(name.lower()) if isinstance(name, str) else None
    if entry is None:
        raise InputError(f"unknown modality {name!r}; known modalities: {', '.join(names())}")
    return entry[1]


def resolve(obj: Any, modality: str | None = None) -> type[ModalityAdapter]:
    """The adapter class for ``obj``: by explicit name, else type/extension, else content."""
    if modality is not None:
        return get(modality)
    candidates = adapters()
    for adapter in candidates:
        if adapter.accepts(obj):
            return adapter
    if is_path(obj):
        path = Path(os.fspath(obj))
        if not path.exists():
            raise InputError(f"{path}: no such file")
        for adapter in candidates:
            if adapter.sniff(path):
                return adapter
    raise InputError(_unsupported_message(obj, candidates))


def adapter_from_config(config: dict[str, Any]) -> ModalityAdapter:
    """Rebuild the adapter stored as ``{"name", "configuration"}`` in a file's metadata."""
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise FormatError(f"modality metadata must have a 'name' string, got {config!r}")
    _discover()
    entry = _adapters.get(config["name"])
    if entry is None:
        raise FormatError(
            f"the file's modality {config['name']!r} is not known to this neurep "
            f"(known: {', '.join(names())}); a newer neurep or an extra may be needed"
        )
    return entry[1].from_config(config)


def _unsupported_message(obj: Any, candidates: list[type[ModalityAdapter]]) -> str:
    what = f"file {os.fspath(obj)!r}" if is_path(obj) else describe(obj)
    supported = "; ".join(f"{adapter.name}: {adapter.description}" for adapter in candidates)
    return (
        f"neurep cannot tell which modality {what} is (supported: {supported}); "
        "pass modality='<name>' to choose one"
    )


def _discover() -> None:
    """Import every public submodule of neurep.modalities once, so each registers itself."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("neurep.modalities")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name not in _NOT_ADAPTER_MODULES:
            importlib.import_module(f"neurep.modalities.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _load_plugin(entry_point)


def _load_plugin(entry_point: importlib.metadata.EntryPoint) -> None:
    """Import a plugin's module (it registers its adapters); a broken plugin only warns."""
    try:
        entry_point.load()
    except Exception as error:  # a third party's bug must not break the built-ins
        import warnings

        warnings.warn(
            f"neurep modality plugin {entry_point.name!r} ({entry_point.value}) failed to "
            f"load: {error}",
            RuntimeWarning,
            stacklevel=3,
        )
