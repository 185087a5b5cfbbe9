"""Batch conversion: a folder, glob, list of paths or HDF5 dataset to one ``.nrep`` per item.

    >>> import neurep
    >>> report = neurep.convert("photos/", "photos-nrep/", preset="fast")  # doctest: +SKIP
    >>> report.summary()                                                   # doctest: +SKIP

``neurep convert SOURCE -o OUT_DIR`` on the command line. Runs are resumable and
idempotent (rerunning converts only what is missing), isolate failures (a corrupt item is
an error line in ``OUT_DIR/index.jsonl`` and the run goes on), and run in this process,
in local processes (``workers=``), or on Dask (``dask_local=``, ``scheduler=``).

Modules: :mod:`~neurep.conversion.sources` (what the items are),
:mod:`~neurep.conversion.settings` (the settings hash), :mod:`~neurep.conversion.index`
(the append-only index), :mod:`~neurep.conversion.work` (one item, in a worker),
:mod:`~neurep.conversion.runner` (where items run), :mod:`~neurep.conversion.api`
(:func:`convert`) and :mod:`~neurep.conversion.report`.
"""

from __future__ import annotations

from neurep.conversion.api import convert
from neurep.conversion.report import ConvertReport

__all__ = ["ConvertReport", "convert"]
