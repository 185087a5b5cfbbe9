"""Random-access byte sources: an open regular file or an in-memory bytes object.

The reader never hands the path to another library: every byte it looks at comes through
:class:`ByteSource`, which refuses reads outside the size measured when the file was opened.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from typing import Final

from neurep.errors import FormatError

_BYTES_NAME: Final = "<bytes>"
#: Files up to this size are read whole when opened (a small datum is read nearly whole
#: anyway); larger ones (long clips) are read piece by piece as needed.
SMALL_FILE_BYTES: Final = 256 << 10


class ByteSource:
    """Reads ``size`` bytes at ``offset`` from a file descriptor or a bytes buffer."""

    def __init__(
        self, *, name: str, path: str | None, data: bytes | None, fd: int | None, size: int
    ) -> None:
        self.name = name
        self.path = path
        self.size = size
        self._data = data
        self._fd = fd
        self._closed = False
        self._lock = threading.Lock()
        # an unclosed reader must not leak its descriptor (data loaders open thousands)
        self._finalizer = weakref.finalize(self, os.close, fd) if fd is not None else None

    @classmethod
    def open(cls, path_or_bytes: object, name: str | None = None) -> ByteSource:
        """Open a path (str / os.PathLike) or wrap bytes / bytearray / memoryview (called
        ``name`` in error messages, ``<bytes>`` by default).

        Raises the builtin ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError``
        for problems with the path itself, and :class:`FormatError` for a path that is not a
        regular file (a FIFO or a device would block or never end).
        """
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            data = bytes(path_or_bytes)
            return cls(name=name or _BYTES_NAME, path=None, data=data, fd=None, size=len(data))
        if not isinstance(path_or_bytes, str | os.PathLike):
            raise TypeError(
                "open_nrep expects a path (str or os.PathLike) or bytes, "
                f"got {type(path_or_bytes).__name__}"
            )
        path = os.fspath(path_or_bytes)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        mode = os.stat(path).st_mode  # FileNotFoundError / PermissionError pass through
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path}: is a directory, not a .nrep file")
        if not stat.S_ISREG(mode):
            raise FormatError(f"{path}: not a regular file, so not a .nrep file")
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # swapped between stat and open
                raise FormatError(f"{path}: not a regular file, so not a .nrep file")
            if st.st_size <= SMALL_FILE_BYTES:  # one read now instead of a dozen small ones
                data = _read_whole(fd, st.st_size, path)
                os.close(fd)
                return cls(name=path, path=path, data=data, fd=None, size=len(data))
        except BaseException:
            os.close(fd)
            raise
        return cls(name=path, path=path, data=None, fd=fd, size=st.st_size)

    def read(self, offset: int, size: int) -> bytes:
        """Return exactly ``size`` bytes at ``offset``; :class:`FormatError` if they are missing."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise FormatError(
                f"{self.name}: truncated or damaged: needs bytes {offset}..{offset + size} "
                f"but the file has {self.size}"
            )
        if self._closed:
            raise ValueError(f"{self.name}: the reader is closed")
        if self._data is not None:
            return self._data[offset : offset + size]
        assert self._fd is not None
        if size == 0:
            return b""
        chunks = []
        remaining = size
        with self._lock:
            while remaining:
                chunk = _pread(self._fd, remaining, offset + size - remaining)
                if not chunk:
                    raise FormatError(
                        f"{self.name}: the file shrank while it was being read "
                        f"(short read at byte {offset + size - remaining})"
                    )
                chunks.append(chunk)
                remaining -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def whole_bytes(self) -> bytes | None:
        """All the bytes when they are held in memory (bytes, or a small file), else None."""
        return self._data

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the file descriptor (no-op for bytes or when already closed)."""
        self._closed = True
        self._data = None
        self._fd = None
        if self._finalizer is not None:
            self._finalizer()  # closes the descriptor once


def _read_whole(fd: int, size: int, path: str) -> bytes:
    """The ``size`` bytes of a small file, read at once (FormatError if it shrank)."""
    chunks, done = [], 0
    while done < size:
        chunk = _pread(fd, size - done, done)
        if not chunk:
            raise FormatError(f"{path}: the file shrank while it was being read")
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover
