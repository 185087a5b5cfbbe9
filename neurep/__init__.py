"""neurep: turn a datum into a neural datum, a small network overfitted to it, kept as ``.nrep``.

    >>> import neurep
    >>> datum = neurep.fit("kodim01.png")          # doctest: +SKIP
    >>> datum.save("kodim01.nrep")                   # doctest: +SKIP
    >>> image = neurep.load("kodim01.nrep").decode()  # doctest: +SKIP

The top-level verbs are :func:`fit`, :func:`load`, :func:`save` and :func:`open`, and
:func:`convert` for many items at once (:mod:`neurep.conversion`), :func:`fit_collection`
and :func:`append` for a dataset sharing one model (:mod:`neurep.collection`); everything
else lives in subpackages (``neurep.nn``, ``neurep.models``, ``neurep.modalities``,
``neurep.formats``, ``neurep.fitting``, ``neurep.cli``).
"""

from __future__ import annotations

from neurep._version import __version__
from neurep.errors import (
    FormatError,
    InputError,
    MissingDependencyError,
    NeurepError,
    ResourceLimitError,
    UnsupportedVersionError,
)

__all__ = [
    "FormatError",
    "InputError",
    "MissingDependencyError",
    "NeuralCollection",
    "NeurepError",
    "ResourceLimitError",
    "UnsupportedVersionError",
    "__version__",
    "append",
    "convert",
    "fit",
    "fit_collection",
    "load",
    "open",
    "save",
]


def __getattr__(name: str):
    # The verbs import torch-heavy modules; keep `import neurep` light until one is used.
    if name in {"fit", "load", "save", "open", "NeuralDatum"}:
        from neurep import api

        return getattr(api, name)
    if name in {"fit_collection", "append", "NeuralCollection"}:
        from neurep import collection

        return getattr(collection, name)
    if name == "convert":
        from neurep.conversion import convert

        return convert
    raise AttributeError(f"module 'neurep' has no attribute {name!r}")
