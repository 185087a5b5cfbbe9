"""Bounded decoding of zstd-compressed zarr chunks.

A chunk is decoded only if its frame header declares a content size equal to the chunk's
size from the array metadata, into a buffer of exactly that size, so a hostile frame cannot
make the reader allocate more than one chunk (a decompression bomb is impossible).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from neurep.errors import FormatError

_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_FCS_BYTES: Final = (0, 2, 4, 8)  # by Frame_Content_Size_flag, when Single_Segment is set
_DICTIONARY_ID_BYTES: Final = (0, 1, 2, 4)


def compress_bound(nbytes: int) -> int:
    """Largest size a zstd frame of ``nbytes`` of content can have (ZSTD_COMPRESSBOUND + slack).

    The slack covers the frame header and the optional 4-byte checksum.
    """
    small_input_margin = ((128 << 10) - nbytes) >> 11 if nbytes < (128 << 10) else 0
    return nbytes + (nbytes >> 8) + small_input_margin + 64


def frame_content_size(frame: bytes) -> int | None:
    """The Frame_Content_Size of a zstd frame header, or None if absent or not zstd.

    Frames with a dictionary ID are refused (None): .nrep chunks use no dictionaries.
    """
    if len(frame) < 6 or frame[:4] != _MAGIC:
        return None
    descriptor = frame[4]
    fcs_flag = descriptor >> 6
    single_segment = (descriptor >> 5) & 1
    if descriptor & 0x08 or _DICTIONARY_ID_BYTES[descriptor & 3]:  # reserved bit / dictionary
        return None
    if fcs_flag == 0 and not single_segment:
        return None  # content size not declared
    fcs_bytes = _FCS_BYTES[fcs_flag] if fcs_flag else 1
    start = 5 + (0 if single_segment else 1)
    if len(frame) < start + fcs_bytes:
        return None
    value = int.from_bytes(frame[start : start + fcs_bytes], "little")
    return value + 256 if fcs_bytes == 2 else value


def decode_chunk(frame: bytes, nbytes: int, where: str) -> bytes:
    """Decompress ``frame`` into exactly ``nbytes`` bytes; :class:`FormatError` otherwise."""
    declared = frame_content_size(frame)
    if declared != nbytes:
        raise FormatError(
            f"{where}: zstd frame declares {declared} bytes of content, expected {nbytes} "
            "(or is not a plain zstd frame)"
        )
    import numcodecs  # a zarr dependency; imported here so reading raw arrays does not need it

    out = np.empty(nbytes, dtype=np.uint8)
    try:
        numcodecs.Zstd().decode(frame, out=out)
    except Exception as error:  # libzstd reports corrupt data as RuntimeError/ValueError
        raise FormatError(f"{where}: damaged zstd data: {error}") from error
    return out.tobytes()
