"""Modality adapters: the user's object <-> a signal tensor ``(B, C, *spatial)`` in ``[0, 1]``.

    >>> from neurep import modalities
    >>> adapter_cls = modalities.resolve("photo.png")          # doctest: +SKIP
    >>> adapter, signal = adapter_cls.from_object("photo.png")  # doctest: +SKIP
    >>> modalities.adapter_from_config(adapter.to_config()).from_signal(signal)  # doctest: +SKIP

See :mod:`neurep.modalities.registry` for how an adapter is chosen and how new ones plug in.
"""

from __future__ import annotations

from neurep.modalities.array import ArrayAdapter
from neurep.modalities.base import ModalityAdapter
from neurep.modalities.image import ImageAdapter
from neurep.modalities.registry import (
    adapter_from_config,
    adapters,
    get,
    names,
    register,
    resolve,
    unregister,
)

__all__ = [
    "ArrayAdapter",
    "ImageAdapter",
    "ModalityAdapter",
    "adapter_from_config",
    "adapters",
    "get",
    "names",
    "register",
    "resolve",
    "unregister",
]
