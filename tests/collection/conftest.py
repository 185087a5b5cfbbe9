"""Fixtures of the collection tests: small collections, fitted once per session.

Every fixture here is read-only; a test that changes files works on a copy
(``collection_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _threads import one_thread
from collection_helpers import ARRAY_ITEMS, PNG_ITEMS, SHARD_ITEMS, Built, random_image
from PIL import Image


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """30 seeded random 16x16 RGB items (22 numpy arrays, then 8 PNG files) fitted with
    ``epochs=1`` into a collection of four shards. Read-only: copy it to change it."""
    import neurep

    root = tmp_path_factory.mktemp("collection")
    arrays = [random_image(100 + i) for i in range(ARRAY_ITEMS)]
    paths = []
    for i, name in enumerate(PNG_ITEMS):
        path = root / "png" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_image(500 + i)).save(path)
        paths.append(path)
    items = [*arrays, *paths]
    folder = root / "col"
    one_thread(
        lambda: neurep.fit_collection(
            items,
            folder,
            embedding_channels=2,
            epochs=1,
            shard_items=SHARD_ITEMS,
            progress=False,
            device="cpu",
        )
    )
    originals = (*arrays, *(np.asarray(Image.open(p).convert("RGB")) for p in paths))
    names = (*(f"item{i:06d}" for i in range(ARRAY_ITEMS)), *PNG_ITEMS)
    return Built(folder, tuple(originals), names)


@pytest.fixture(scope="session")
def other_folder(tmp_path_factory) -> Path:
    """Another collection of the same item shape (another seed, so another model), one shard
    of 4 items. Read-only."""
    import neurep

    folder = tmp_path_factory.mktemp("other") / "col"
    items = [random_image(900 + i) for i in range(4)]
    one_thread(
        lambda: neurep.fit_collection(
            items, folder, embedding_channels=2, epochs=1, seed=1, progress=False, device="cpu"
        )
    )
    return folder


@pytest.fixture
def collection_copy(built, tmp_path) -> Path:
    """A private copy of ``built``'s folder, to damage or grow."""
    return Path(shutil.copytree(built.folder, tmp_path / "col"))
