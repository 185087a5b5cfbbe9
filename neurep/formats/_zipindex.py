"""A strict reader of the ZIP central directory, written for hostile input.

Only what a ``.nrep`` needs is accepted: STORED members (no compression, so declared sizes are
the real sizes) except ``zarr.json`` members, which format 1.1 may DEFLATE (inflated into a
buffer of the declared size, no larger, so the declared size bounds the work), no encryption,
a single disk, no gaps or overlaps between members, ZIP64 where sizes need it, and member
names that are plain relative paths. Every declared size and offset is checked against the
file size before it is used, so nothing is allocated or read on the word of a corrupt header.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import struct
import zlib

from neurep.errors import FormatError, ResourceLimitError
from neurep.formats._limits import ReadLimits
from neurep.formats._source import ByteSource

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory record, 22 bytes
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_LOCAL_SIG = b"PK\x03\x04"

_STORED = 0
_DEFLATED = 8
_FLAG_DATA_DESCRIPTOR = 0x0008
_FLAG_UTF8 = 0x0800
_ALLOWED_FLAGS = _FLAG_DATA_DESCRIPTOR | _FLAG_UTF8
_MAX_U16 = 0xFFFF
_MAX_U32 = 0xFFFFFFFF
_MAX_COMMENT = 0xFFFF
_MAX_NAME_CHARS = 1024
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-/]+")


@dataclasses.dataclass(frozen=True)
class Member:
    """One ZIP member: its name, where its bytes lie in the file and their inflated ``size``."""

    name: str
    data_offset: int
    size: int
    crc32: int
    stored_size: int = -1  # bytes in the file (-1: ``size``, a STORED member)
    deflated: bool = False


class ZipIndex:
    """The validated member table of a ZIP file; reads member bytes and checks their CRC-32."""

    def __init__(self, source: ByteSource, members: dict[str, Member]) -> None:
        self.source = source
        self.members = members

    @classmethod
    def parse(cls, source: ByteSource, limits: ReadLimits) -> ZipIndex:
        """Validate the central directory and every local header of ``source``."""
        name = source.name
        if source.size == 0:
            raise FormatError(f"{name}: empty file, not a .nrep file")
        if source.size > limits.max_file_bytes:
            raise ResourceLimitError(
                f"{name}: file is {source.size} bytes, more than ReadLimits.max_file_bytes="
                f"{limits.max_file_bytes}; pass open_nrep(..., limits=ReadLimits(...)) to allow it"
            )
        entry_count, cd_offset, cd_size, cd_end = _find_central_directory(source)
        if entry_count > limits.max_members:
            raise ResourceLimitError(
                f"{name}: declares {entry_count} ZIP members, more than "
                f"ReadLimits.max_members={limits.max_members}"
            )
        if cd_size < entry_count * _CENTRAL.size:
            raise FormatError(f"{name}: damaged ZIP: central directory too small for its entries")
        directory = source.read(cd_offset, cd_size)
        members = _parse_entries(source, directory, entry_count, cd_offset)
        if cd_end != cd_offset + cd_size:  # pragma: no cover - guaranteed by the finder
            raise FormatError(f"{name}: damaged ZIP: central directory misplaced")
        return cls(source, members)

    def read(self, member_name: str) -> bytes:
        """The whole member, after checking its CRC-32 against the central directory."""
        member = self.members[member_name]
        if member.deflated:
            data = _inflate(
                self.source.read(member.data_offset, member.stored_size), member, self.source.name
            )
        else:
            data = self.source.read(member.data_offset, member.size)
        if zlib.crc32(data) != member.crc32:
            raise FormatError(
                f"{self.source.name}: member {member_name!r} is damaged (CRC-32 mismatch)"
            )
        return data


def _find_central_directory(source: ByteSource) -> tuple[int, int, int, int]:
    """Locate the end-of-central-directory record; return (entries, cd offset, cd size, cd end).

    The central directory must end exactly where the (ZIP64) end record starts: no data may
    be prepended to, or hidden inside, the archive.
    """
    name = source.name
    if source.size < _EOCD.size:
        raise FormatError(f"{name}: too short ({source.size} bytes) to be a ZIP, not a .nrep file")
    tail_size = min(source.size, _EOCD.size + _MAX_COMMENT)
    tail_start = source.size - tail_size
    tail = source.read(tail_start, tail_size)
    position = tail.rfind(_EOCD_SIG)
    while position >= 0:
        record_fits = position + _EOCD.size <= len(tail)
        if record_fits:
            comment_length = struct.unpack_from("<H", tail, position + 20)[0]
            if position + _EOCD.size + comment_length == len(tail):
                break
        position = tail.rfind(_EOCD_SIG, 0, position)
    if position < 0:
        raise FormatError(
            f"{name}: not a ZIP archive (no end-of-central-directory record), so not a .nrep "
            "file; it may be truncated"
        )
    eocd_offset = tail_start + position
    (_, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _) = _EOCD.unpack_from(
        tail, position
    )
    if disk != 0 or cd_disk != 0 or entries_here != entries:
        raise FormatError(f"{name}: multi-disk ZIP archives are not .nrep files")
    record_end = eocd_offset
    needs_zip64 = _MAX_U16 in (entries, entries_here) or _MAX_U32 in (cd_size, cd_offset)
    locator_offset = eocd_offset - _ZIP64_LOCATOR.size
    if locator_offset >= 0 and source.read(locator_offset, 4) == _ZIP64_LOCATOR_SIG:
        _, locator_disk, zip64_offset, disks = _ZIP64_LOCATOR.unpack(
            source.read(locator_offset, _ZIP64_LOCATOR.size)
        )
        if locator_disk != 0 or disks != 1:
            raise FormatError(f"{name}: multi-disk ZIP archives are not .nrep files")
        if zip64_offset + _ZIP64_EOCD.size != locator_offset:
            raise FormatError(f"{name}: damaged ZIP64 end record (misplaced)")
        (sig, _, _, _, disk, cd_disk, entries_here, entries, cd_size, cd_offset) = (
            _ZIP64_EOCD.unpack(source.read(zip64_offset, _ZIP64_EOCD.size))
        )
        if sig != _ZIP64_EOCD_SIG:
            raise FormatError(f"{name}: damaged ZIP64 end record (bad signature)")
        if disk != 0 or cd_disk != 0 or entries_here != entries:
            raise FormatError(f"{name}: multi-disk ZIP archives are not .nrep files")
        record_end = zip64_offset
    elif needs_zip64:
        raise FormatError(f"{name}: damaged ZIP: ZIP64 sizes announced but no ZIP64 record")
    if cd_offset + cd_size != record_end:
        raise FormatError(
            f"{name}: damaged or foreign ZIP: the central directory does not end where the end "
            f"record starts (offset {cd_offset} + size {cd_size} != {record_end}); the file may "
            "be truncated or have data prepended"
        )
    return entries, cd_offset, cd_size, record_end


def _parse_entries(
    source: ByteSource, directory: bytes, entry_count: int, cd_offset: int
) -> dict[str, Member]:
    name = source.name
    members: dict[str, Member] = {}
    spans: list[tuple[int, int, str]] = []
    position = 0
    for _ in range(entry_count):
        if position + _CENTRAL.size > len(directory):
            raise FormatError(f"{name}: damaged ZIP: central directory ends inside an entry")
        (
            sig,
            _,
            _,
            flags,
            method,
            _,
            _,
            crc,
            compressed,
            size,
            name_len,
            extra_len,
            comment_len,
            disk,
            _,
            _,
            local_offset,
        ) = _CENTRAL.unpack_from(directory, position)
        if sig != _CENTRAL_SIG:
            raise FormatError(f"{name}: damaged ZIP: bad central directory entry signature")
        fixed_end = position + _CENTRAL.size
        entry_end = fixed_end + name_len + extra_len + comment_len
        if entry_end > len(directory):
            raise FormatError(f"{name}: damaged ZIP: central directory entry overruns")
        raw_name = directory[fixed_end : fixed_end + name_len]
        extra = directory[fixed_end + name_len : fixed_end + name_len + extra_len]
        position = entry_end
        member_name = _decode_name(raw_name, flags, name)
        size, compressed, local_offset, disk = _apply_zip64(
            extra, size, compressed, local_offset, disk, name, member_name
        )
        if flags & ~_ALLOWED_FLAGS:
            raise FormatError(
                f"{name}: member {member_name!r} uses unsupported ZIP features (flags "
                f"{flags:#06x}: encryption or similar)"
            )
        deflated = method == _DEFLATED and _may_deflate(member_name)
        if method != _STORED and not deflated:
            raise FormatError(
                f"{name}: member {member_name!r} is compressed (method {method}); .nrep members "
                "must be STORED (zarr.json members may be DEFLATED)"
            )
        if not deflated and compressed != size:
            raise FormatError(
                f"{name}: member {member_name!r} declares {compressed} stored bytes but "
                f"{size} uncompressed bytes"
            )
        if disk != 0:
            raise FormatError(f"{name}: multi-disk ZIP archives are not .nrep files")
        if member_name in members:
            raise FormatError(f"{name}: duplicate ZIP member {member_name!r}")
        data_offset = _check_local_header(source, local_offset, member_name, cd_offset, method)
        if data_offset + compressed > cd_offset:
            raise FormatError(
                f"{name}: member {member_name!r} declares {compressed} bytes, which run past the "
                "archive's data area (truncated file or a lying header)"
            )
        members[member_name] = Member(member_name, data_offset, size, crc, compressed, deflated)
        spans.append((local_offset, data_offset + compressed, member_name))
    if position != len(directory):
        raise FormatError(f"{name}: damaged ZIP: trailing bytes in the central directory")
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise FormatError(f"{name}: ZIP members {first!r} and {second!r} overlap")
    return members


def _may_deflate(member_name: str) -> bool:
    """Only JSON metadata may be deflated: chunks and weights are read in place."""
    return member_name == "zarr.json" or member_name.endswith("/zarr.json")


def _inflate(data: bytes, member: Member, source_name: str) -> bytes:
    """Raw-deflate ``data`` into at most ``member.size`` bytes; exactly that many or error."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, member.size + 1)
    except zlib.error as error:
        raise FormatError(
            f"{source_name}: member {member.name!r} does not inflate: {error}"
        ) from None
    if len(out) != member.size or not inflater.eof or inflater.unused_data:
        raise FormatError(
            f"{source_name}: member {member.name!r} does not inflate to its declared "
            f"{member.size} bytes"
        )
    return out


def _decode_name(raw: bytes, flags: int, source_name: str) -> str:
    try:
        member_name = raw.decode("utf-8" if flags & _FLAG_UTF8 else "ascii")
    except UnicodeDecodeError:
        raise FormatError(
            f"{source_name}: ZIP member name {raw[:80]!r} is not valid text"
        ) from None
    problem = _name_problem(member_name)
    if problem:
        raise FormatError(f"{source_name}: ZIP member {member_name[:200]!r}: {problem}")
    return member_name


def _name_problem(member_name: str) -> str | None:
    """Why ``member_name`` is not a safe relative member path, or None if it is."""
    if not member_name or len(member_name) > _MAX_NAME_CHARS:
        return "empty or too long name"
    if not _NAME_CHARS.fullmatch(member_name):
        return "name has characters outside [A-Za-z0-9_.-/]"
    if member_name.startswith("/"):
        return "absolute path"
    parts = member_name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "path with an empty, '.' or '..' component"
    return None


def _apply_zip64(
    extra: bytes,
    size: int,
    compressed: int,
    offset: int,
    disk: int,
    source_name: str,
    member_name: str,
) -> tuple[int, int, int, int]:
    """Replace 0xFFFFFFFF placeholders by the values of the ZIP64 extra field."""
    wanted = [size == _MAX_U32, compressed == _MAX_U32, offset == _MAX_U32, disk == _MAX_U16]
    if not any(wanted):
        return size, compressed, offset, disk
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        position += 4 + length
        if tag != 0x0001:
            continue
        values = [size, compressed, offset, disk]
        cursor = 0
        for index, width in enumerate((8, 8, 8, 4)):
            if not wanted[index]:
                continue
            if cursor + width > len(body):
                break
            values[index] = int.from_bytes(body[cursor : cursor + width], "little")
            cursor += width
        else:
            return values[0], values[1], values[2], values[3]
        break
    raise FormatError(f"{source_name}: member {member_name!r} has a damaged ZIP64 extra field")


def _check_local_header(
    source: ByteSource, offset: int, member_name: str, cd_offset: int, method: int
) -> int:
    """Check the local header at ``offset`` agrees with the central entry; return data offset."""
    name = source.name
    if offset + _LOCAL.size > cd_offset:
        raise FormatError(f"{name}: member {member_name!r} has a local header outside the data")
    (sig, _, _, local_method, _, _, _, _, _, name_len, extra_len) = _LOCAL.unpack(
        source.read(offset, _LOCAL.size)
    )
    if sig != _LOCAL_SIG:
        raise FormatError(f"{name}: member {member_name!r}: bad local header signature")
    if local_method != method:
        raise FormatError(f"{name}: member {member_name!r} is compressed in its local header")
    name_end = offset + _LOCAL.size + name_len
    if name_end > cd_offset:
        raise FormatError(f"{name}: member {member_name!r}: local header overruns")
    local_name = source.read(offset + _LOCAL.size, name_len)
    if local_name != member_name.encode("utf-8"):
        raise FormatError(
            f"{name}: member {member_name!r}: local header names {local_name[:80]!r} instead"
        )
    return name_end + extra_len
