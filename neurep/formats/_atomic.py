"""Atomic file replacement: write a temporary file beside the target, fsync, rename.

A crash (even SIGKILL) at any moment leaves the target as it was or as the new complete file.
A symlink at the target path is replaced by the new file (``rename`` never follows a link at
the destination), so writing never escapes the target's directory. A hidden
``.<name>.<random>.tmp`` file may remain after a crash; it is never read by neurep.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(
    path: str, write: Callable[[BinaryIO], None], check: Callable[[str], None] | None = None
) -> int:
    """Create or replace ``path`` with what ``write(file)`` writes; return the file size.

    ``check(temporary_path)`` runs on the complete, fsynced temporary file before it replaces
    the target; if it raises, the target is left untouched.
    """
    absolute = os.path.abspath(path)
    directory, basename = os.path.split(absolute)
    if os.path.isdir(absolute) and not os.path.islink(absolute):
        raise IsADirectoryError(f"{path}: is a directory; give a file path ending in .nrep")
    mode = _mode_for(absolute)
    fd, temporary = tempfile.mkstemp(prefix=f".{basename}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            if hasattr(os, "fchmod"):  # POSIX; elsewhere the default mode stands
                os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        if check is not None:
            check(temporary)
        size = os.stat(temporary).st_size
        os.replace(temporary, absolute)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
    return size


def _mode_for(path: str) -> int:
    """Keep the permission bits of an existing regular file, else ``0o666 & ~umask``."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        status = None
    if status is not None and stat.S_ISREG(status.st_mode):
        return stat.S_IMODE(status.st_mode)
    return 0o666 & ~_current_umask()


def _current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); best effort where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
