"""Running a fit on one torch thread: quick and deterministic on a shared 2-core machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def one_thread(make: Callable[[], T]) -> T:
    """``make()`` with torch on one thread, the previous thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make()
    finally:
        torch.set_num_threads(threads)
