"""Fits in this folder run on one torch thread: tiny items fit faster so, and the tests
share the machine with the processes they start."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
