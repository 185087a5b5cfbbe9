"""The neurep error hierarchy.

Every error derives from :class:`NeurepError` and also from the builtin a caller would
naturally catch (``ValueError``, ``TypeError``, ``ImportError``), so ``except ValueError``
keeps working for code that does not know about neurep.
"""

from __future__ import annotations


class NeurepError(Exception):
    """Base class of every error neurep raises on purpose."""


class FormatError(NeurepError, ValueError):
    """A ``.nrep`` file is damaged, foreign, tampered with, too large, or of an unknown version.

    The message names the file and the problem.
    """


class UnsupportedVersionError(FormatError):
    """The file was written by a newer, incompatible major version of the format."""


class ResourceLimitError(FormatError):
    """The file declares more data (bytes, elements, members) than the configured limits allow."""


class InputError(NeurepError, ValueError):
    """The datum given to :func:`neurep.fit` cannot be used (wrong kind, shape, dtype, values)."""


class MissingDependencyError(NeurepError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` that fixes it."""
