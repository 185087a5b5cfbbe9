"""Models describe themselves as ``{"name", "configuration"}`` and are rebuilt from it.

The configuration is the constructor's keyword arguments, stored in the ``.nrep`` metadata,
so a decoder is rebuilt exactly; nothing is guessed back from weight shapes.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["ConfigurableModule", "build", "register", "registered_names"]

_REGISTRY: dict[str, type[ConfigurableModule]] = {}


class ConfigurableModule(nn.Module):
    """An ``nn.Module`` that remembers the keyword arguments it was built with."""

    name: str = ""

    def __init__(self, **configuration: Any) -> None:
        super().__init__()
        self.configuration = _jsonable(configuration)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": dict(self.configuration)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def register(name: str):
    """Class decorator: make ``cls`` buildable from ``{"name": name, ...}``."""

    def decorate(cls: type[ConfigurableModule]) -> type[ConfigurableModule]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def build(config: dict[str, Any]) -> ConfigurableModule:
    """Rebuild a model from ``{"name", "configuration"}`` (e.g. from a file's metadata).

    Raises:
        ValueError: unknown name or a configuration the constructor rejects.
    """
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ValueError(f"a model description needs a 'name' string, got {config!r:.200}")
    name = config["name"]
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(registered_names())}")
    configuration = config.get("configuration", {})
    if not isinstance(configuration, dict):
        raise ValueError(f"model {name!r}: 'configuration' must be an object")
    try:
        return _REGISTRY[name](**configuration)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model {name!r}: bad configuration: {error}") from error
