"""Fixtures of the pack tests (``pack_`` prefix: other tests of neurep.data share this
folder): one small converted folder, made once per session, and its pack."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

#: The items of ``pack_converted`` (a subfolder item included).
PACK_SOURCES = ("a.png", "b.png", "sub/c.png")
#: The errored index row appended to ``pack_converted``'s index: never an item.
PACK_ERROR_ROW = {"output": "broken.nrep", "source": "broken.png", "status": "error",
                  "error": "a test's errored item"}  # fmt: skip


@pytest.fixture(scope="session")
def pack_converted(tmp_path_factory) -> Path:
    """A folder made by ``neurep.convert`` from three 16x16 PNGs (one in ``sub/``), with an
    errored row appended to its index. Read-only: copy it to change it."""
    import neurep

    root = tmp_path_factory.mktemp("pack_converted")
    source = root / "source"
    for name in PACK_SOURCES:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    out = root / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        neurep.convert(source, out, preset="fast", steps=5, progress=False)
    finally:
        torch.set_num_threads(threads)
    with open(out / "index.jsonl", "a", encoding="utf-8") as index:
        index.write(json.dumps(PACK_ERROR_ROW) + "\n")
    return out


@pytest.fixture(scope="session")
def pack_file(pack_converted, tmp_path_factory) -> Path:
    """``pack_converted`` packed into ``packs/converted.h5``. Read-only: copy it to change it."""
    from neurep.data.packs import pack

    return pack(pack_converted, tmp_path_factory.mktemp("packs") / "converted.h5", progress=False)
