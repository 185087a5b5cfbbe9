"""Shared by the whole suite: this folder is on ``sys.path`` (pytest's prepend import mode
puts a conftest's folder there), so every test module can ``from _clips import ...``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Fits in the module run on one torch thread (deterministic and quick on 2 cores);
    modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
