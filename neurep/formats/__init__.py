"""The ``.nrep`` file format: container (ZIP + zarr v3 + safetensors), metadata, limits,
quantisation. This package is the public face; import from here.

    >>> from neurep.formats import write_nrep, open_nrep
    >>> write_nrep("x.nrep", metadata=..., arrays={"embedding": e}, tensors=w)  # doctest: +SKIP
    >>> with open_nrep("x.nrep") as reader:                                       # doctest: +SKIP
    ...     frames = reader.read_array("embedding", slice(10, 20))

The container is one ZIP (STORED members) laid out as a zarr v3 hierarchy::

    zarr.json                 root zarr group; attributes {"neurep": metadata}
    <array>/zarr.json         one zarr v3 array per entry of ``arrays`` (e.g. "embedding")
    <array>/c/<i>/<j>/...     its chunks, raw little-endian bytes (codec "bytes" only)
    weights.safetensors       the decoder weights (safetensors)

The specification is docs/FORMAT.md. The work is done in ``_writer`` (atomic writing),
``_reader`` (validated reading), ``_zipindex`` (strict ZIP parsing), ``_zarr_meta``,
``_weights`` and ``_metadata`` (schema and version policy); quantisation of the weights and
the embedding in :mod:`neurep.formats.quantize` (its metadata checked by ``_qinfo``).
"""

from __future__ import annotations

from neurep.formats._compact import compact_array, compact_tensors
from neurep.formats._limits import ReadLimits
from neurep.formats._metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    NrepFormatWarning,
    metadata_schema,
    validate_metadata,
)
from neurep.formats._qinfo import DTYPE_NAMES
from neurep.formats._reader import NrepReader, open_nrep
from neurep.formats._writer import write_nrep
from neurep.formats.quantize import (
    PRECISIONS,
    dequantize_array,
    dequantize_tensors,
    quantize_array,
    quantize_tensors,
)

__all__ = [
    "DTYPE_NAMES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PRECISIONS",
    "NrepFormatWarning",
    "NrepReader",
    "ReadLimits",
    "compact_array",
    "compact_tensors",
    "dequantize_array",
    "dequantize_tensors",
    "metadata_schema",
    "open_nrep",
    "quantize_array",
    "quantize_tensors",
    "validate_metadata",
    "write_nrep",
]
