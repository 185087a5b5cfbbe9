"""Collections: one shared model for a whole dataset, each item stored as its embedding.

    >>> col = neurep.fit_collection(paths, "crops.nrepc")       # doctest: +SKIP
    >>> col[3].decode()                                          # doctest: +SKIP
    >>> neurep.append("crops.nrepc", more_paths)                 # doctest: +SKIP

Files: :mod:`neurep.collection._files` (layout) and docs/FORMAT.md, "Collections".
"""

from __future__ import annotations

from neurep.collection._files import is_collection
from neurep.collection.build import append, default_names, fit_collection
from neurep.collection.collection import NeuralCollection

__all__ = ["NeuralCollection", "append", "default_names", "fit_collection", "is_collection"]
