"""The CPU settings a fit runs under: subnormals flushed, freed memory kept for reuse.

Both are process-wide, so :func:`fit_settings` applies them for the length of a fit and
undoes them after; nested and concurrent fits share one application (a counter).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["fit_settings", "heap_allocator", "with_fit_settings"]

Result = TypeVar("Result")

# glibc's mallopt parameters and defaults (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_THRESHOLD = 128 * 1024
#: The largest mmap threshold glibc accepts on 64-bit machines (larger values are refused).
_LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory kept at the top of the heap during a fit instead of being returned.
_KEPT_HEAP = 1 << 30

_lock = threading.Lock()
_active = 0  # fits inside fit_settings now
_flushing = False  # whether the first of them could flush subnormals


@functools.cache
def heap_allocator() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


def _keep_freed_memory(libc: ctypes.CDLL | None, keep: bool) -> None:
    """Serve buffers up to 32 MiB from the heap and keep freed ones there (``keep``), or go
    back to glibc's defaults and return the kept memory to the system.

    A fit step frees and reallocates the same few-MB activations every step. By default
    glibc maps each one afresh and unmaps it on free, so every step pays the page faults of
    touching new memory: on a 2-core VM that was 40% of a default Kodak step and half of an
    LPNet-Conv step (benchmarks/RESULTS.md, "Fit speed"). glibc has no getter for these
    settings, so "back" means its documented defaults (which turns its dynamic mmap
    threshold off, a difference only in when it maps rather than reuses).
    """
    if libc is None:
        return
    if keep:
        libc.mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_HEAP)
    else:
        libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


@contextlib.contextmanager
def fit_settings() -> Iterator[None]:
    """Flush subnormal floats to zero and keep freed memory for reuse, while inside.

    Subnormals: fits that drive values towards zero (occupancy logits, S3K's decaying
    states) otherwise spend most steps in the CPU's slow subnormal arithmetic (a 16³
    shape's fast fit took 74 s instead of 5 s, to the same result; RESULTS.md, "Shapes").
    The setting is switched off afterwards (PyTorch's default; there is no getter).
    The first of overlapping fits applies the settings and the last to finish undoes them.
    """
    global _active, _flushing
    with _lock:
        if _active == 0:
            _flushing = torch.set_flush_denormal(True)
            _keep_freed_memory(heap_allocator(), True)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _flushing:
                    torch.set_flush_denormal(False)
                _keep_freed_memory(heap_allocator(), False)


def with_fit_settings(function: Callable[..., Result]) -> Callable[..., Result]:
    """``function`` run inside :func:`fit_settings`."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Result:
        with fit_settings():
            return function(*args, **kwargs)

    return wrapped
