"""The ``.nrep`` container: one ZIP (STORED members) laid out as a zarr v3 hierarchy.

    zarr.json                 root zarr group; attributes {"neurep": metadata}
    <array>/zarr.json         one zarr v3 array per entry of ``arrays`` (e.g. "embedding")
    <array>/c/<i>/<j>/...     its chunks, raw little-endian bytes (codec "bytes" only)
    weights.safetensors       the decoder weights (safetensors)

The specification is docs/FORMAT.md. This module is the public face; the work is done in
``_writer`` (atomic writing), ``_reader`` (validated reading), ``_zipindex`` (strict ZIP
parsing), ``_zarr_meta``, ``_weights`` and ``_metadata`` (schema and version policy).
"""

from __future__ import annotations

from neurep.formats._limits import ReadLimits
from neurep.formats._metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    NrepFormatWarning,
    metadata_schema,
    validate_metadata,
)
from neurep.formats._reader import NrepReader, open_nrep
from neurep.formats._writer import write_nrep

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
