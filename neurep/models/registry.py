"""Models describe themselves as ``{"name", "configuration"}`` and are rebuilt from it.

The configuration is the constructor's arguments, stored in the ``.nrep`` metadata, so a
decoder is rebuilt exactly; nothing is guessed back from weight shapes. It is read from the
constructor's own signature (every argument, defaults included, in signature order), so an
argument cannot be declared and then forgotten in what is stored.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["ConfigurableModule", "build", "register", "registered_names"]

_REGISTRY: dict[str, type[ConfigurableModule]] = {}


class ConfigurableModule(nn.Module):
    """An ``nn.Module`` that remembers the arguments it was built with.

    A subclass declares its arguments once, in its ``__init__`` signature, and calls plain
    ``super().__init__()``; ``self.configuration`` is then every argument but ``self`` (with
    defaults applied, in signature order, tuples as lists). For a subclass of a subclass, the
    signature of the class actually built wins.
    """

    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # classes without their own __init__ inherit the wrapper
            cls.__init__ = _recording(cls.__init__)

    def __init__(self) -> None:
        super().__init__()
        self.configuration: dict[str, Any] = {}

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": dict(self.configuration)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a constructor so that it stores its bound arguments as ``self.configuration``."""
    signature = inspect.signature(init)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{init.__qualname__}: *args cannot be stored as a configuration")

    @functools.wraps(init)
    def recording_init(self: ConfigurableModule, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # first, so bad arguments raise the constructor's own error
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        configuration: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:  # [0] is self
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                configuration.update(value)
            else:
                configuration[name] = value
        # Set after the body (and after any inner wrapper), so the outermost signature wins.
        self.configuration = _jsonable(configuration)

    return recording_init


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
