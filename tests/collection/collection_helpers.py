"""What the collection tests share besides fixtures: the built collection's layout and
small item makers (a module of its own: ``conftest`` names collide across test folders)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Items of ``built``: arrays first, then PNG files (one in a subfolder), 16 x 16 RGB.
ARRAY_ITEMS = 22
PNG_ITEMS = ("p0.png", "p1.png", "p2.png", "p3.png", "p4.png", "p5.png", "p6.png", "sub/p7.png")
SIDE = 16
#: Items per shard of ``built``: 30 items -> shards of 8, 8, 8 and 6.
SHARD_ITEMS = 8


@dataclass(frozen=True)
class Built:
    """A collection folder and the items it was fitted to (as uint8 H x W x 3 arrays)."""

    folder: Path
    originals: tuple[np.ndarray, ...]
    names: tuple[str, ...]


def random_image(seed: int, side: int = SIDE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
