"""Fits in this folder run on one torch thread (``one_torch_thread``, tests/conftest.py):
tiny items fit faster so, and the tests share the machine with the processes they start."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread_for_every_test(one_torch_thread):
    yield
