"""The ``.nrep`` file format: container (ZIP + zarr v3 + safetensors), metadata, limits.

    >>> from neurep.formats import write_nrep, open_nrep
    >>> write_nrep("x.nrep", metadata=..., arrays={"embedding": e}, tensors=w)  # doctest: +SKIP
    >>> with open_nrep("x.nrep") as reader:                                       # doctest: +SKIP
    ...     frames = reader.read_array("embedding", slice(10, 20))

The specification is docs/FORMAT.md; quantisation lives in :mod:`neurep.formats.quantize`.
"""

from __future__ import annotations

from neurep.formats.container import (
    FORMAT_NAME,
    FORMAT_VERSION,
    NrepFormatWarning,
    NrepReader,
    ReadLimits,
    metadata_schema,
    open_nrep,
    validate_metadata,
    write_nrep,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "NrepFormatWarning",
    "NrepReader",
    "ReadLimits",
    "metadata_schema",
    "open_nrep",
    "validate_metadata",
    "write_nrep",
]
