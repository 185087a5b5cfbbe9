"""The ``neurep`` command line: ``neurep fit``, ``neurep decode``, ``neurep info``.

Each command lives in its own module with a ``main(argv) -> int`` that tests call directly;
:func:`neurep.cli.main.main` dispatches to them. The commands are a thin layer over the
Python API (:func:`neurep.fit`, :func:`neurep.load`, :func:`neurep.open`).
"""

from __future__ import annotations

__all__: list[str] = []
