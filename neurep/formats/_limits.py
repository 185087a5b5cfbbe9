"""Resource limits applied while reading a ``.nrep`` file.

Every size a file *declares* (member sizes, shapes, header lengths, JSON sizes) is checked
against these limits before anything of that size is allocated, so a hostile file cannot make
the reader allocate more than the limits or spend long validating.
"""

from __future__ import annotations

import dataclasses

GiB = 1 << 30
MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Upper bounds for what :func:`neurep.formats.open_nrep` will accept.

    The defaults admit any file neurep itself writes for ordinary data (a video of several
    hundred MB loads) while refusing absurd declarations. Pass a smaller instance when reading
    untrusted files in a memory-constrained worker.

    Attributes:
        max_file_bytes: largest file (the whole ZIP) accepted.
        max_members: most ZIP members (one per zarr chunk, plus metadata members).
        max_metadata_bytes: largest JSON document (a ``zarr.json`` member or the safetensors
            header) that is parsed.
        max_total_metadata_bytes: most bytes of all ``zarr.json`` members together (all are
            parsed when the file is opened).
        max_json_depth: deepest nesting of objects/arrays in any JSON document.
        max_json_nodes: most values (objects, arrays, strings, numbers...) in one JSON document
            (the safetensors header may have ``16 * max_tensors``); bounds validation time.
        max_string_chars: longest string (value or key) in any JSON document.
        max_ndim: most dimensions of an array or tensor.
        max_elements: most elements in one array or one tensor.
        max_tensors: most tensors in the weights member.
        max_decoded_bytes: most bytes one ``read_array`` or ``read_tensors`` call materialises
            (the result plus the chunks it is assembled from).
    """

    max_file_bytes: int = 4 * GiB
    max_members: int = 200_000
    max_metadata_bytes: int = 4 * MiB
    max_total_metadata_bytes: int = 16 * MiB
    max_json_depth: int = 32
    max_json_nodes: int = 50_000
    max_string_chars: int = 65_536
    max_ndim: int = 32
    max_elements: int = 1 << 29
    max_tensors: int = 10_000
    max_decoded_bytes: int = 2 * GiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ReadLimits.{field.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = ReadLimits()
