"""Fixtures of the .nrep container tests (helpers live in nrep_helpers.py)."""

from __future__ import annotations

import os

import pytest
from nrep_helpers import small_inputs

from neurep.formats import write_nrep


@pytest.fixture(scope="session")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small valid .nrep file (a few hundred bytes)."""
    metadata, arrays, tensors = small_inputs()
    path = tmp_path_factory.mktemp("small") / "small.nrep"
    # one item a chunk, so that tests can drop, resize or forge single chunks
    chunks = {"embedding": (1, *arrays["embedding"].shape[1:])}
    # A fixed `created` time: the same bytes every run, so that a test flipping bytes of the
    # deflated metadata cannot pass or fail with the clock (a flip inside the timestamp's
    # digits may still decode to a valid time).
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1767225600"
    try:
        write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors, array_chunks=chunks)
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous
    return path.read_bytes()
