"""The process-wide CPU settings fits run under (neurep.fitting.cpu)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from neurep.fitting.cpu import fit_settings, heap_allocator, with_fit_settings

SUBNORMAL = 1e-40  # below float32's smallest normal number (1.2e-38)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mapped_bytes_of_a_fresh_buffer() -> int:
    """Bytes glibc maps with mmap for one new 8 MiB tensor (0 when served from the heap)."""
    libc = heap_allocator()
    libc.mallinfo2.restype = _MallInfo2
    before = libc.mallinfo2().hblkhd
    buffer = torch.empty(2 * 1024 * 1024, dtype=torch.float32)
    mapped = libc.mallinfo2().hblkhd - before
    del buffer
    return mapped


def _subnormals_survive() -> bool:
    return bool((torch.tensor([SUBNORMAL]) * 1.0).item() != 0.0)


needs_glibc = pytest.mark.skipif(
    heap_allocator() is None or not hasattr(heap_allocator(), "mallinfo2"),
    reason="the heap settings are glibc's",
)


def _in_a_fresh_interpreter(check: str) -> None:
    """Run this module's ``check`` in a new Python: libraries other tests import (open3d's
    allocator among them) can take over malloc for the rest of the process, and glibc's
    counters with it, so the heap checks cannot run after them in the same process."""
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_cpu_settings; test_cpu_settings.{check}()"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


def _check_buffers_come_from_the_heap_inside_and_are_mapped_outside() -> None:
    assert _mapped_bytes_of_a_fresh_buffer() >= 8 * 1024 * 1024
    with fit_settings():
        assert _mapped_bytes_of_a_fresh_buffer() == 0
    assert _mapped_bytes_of_a_fresh_buffer() >= 8 * 1024 * 1024


@needs_glibc
def test_large_buffers_come_from_the_heap_inside_and_are_mapped_outside() -> None:
    _in_a_fresh_interpreter("_check_buffers_come_from_the_heap_inside_and_are_mapped_outside")


def test_subnormals_are_flushed_inside_and_kept_after() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")
    assert _subnormals_survive()
    with fit_settings():
        assert not _subnormals_survive()
    assert _subnormals_survive()


@needs_glibc
def test_nested_and_overlapping_fits_keep_the_settings_until_the_last_ends() -> None:
    _in_a_fresh_interpreter("_check_nested_and_overlapping_fits")


def _check_nested_and_overlapping_fits() -> None:
    inner_started, outer_done = threading.Event(), threading.Event()
    seen = {}

    def second_fit() -> None:
        with fit_settings():
            inner_started.set()
            outer_done.wait(timeout=30)
            seen["mapped"] = _mapped_bytes_of_a_fresh_buffer()
            seen["subnormals"] = _subnormals_survive()

    with fit_settings():
        with fit_settings():  # nested in the same thread
            pass
        assert _mapped_bytes_of_a_fresh_buffer() == 0
        thread = threading.Thread(target=second_fit)
        thread.start()
        assert inner_started.wait(timeout=30)
    outer_done.set()  # the first fit has ended; the second is still running
    thread.join(timeout=30)
    assert seen == {"mapped": 0, "subnormals": False}
    assert _mapped_bytes_of_a_fresh_buffer() > 0


def test_the_decorator_applies_the_settings_and_undoes_them_on_error() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")

    @with_fit_settings
    def failing_fit() -> None:
        assert not _subnormals_survive()
        raise RuntimeError("the fit failed")

    with pytest.raises(RuntimeError, match="the fit failed"):
        failing_fit()
    assert _subnormals_survive()
