"""Fixtures of the pack tests (``pack_`` prefix: other tests of neurep.data share this
folder): one small converted folder, made once per session, and its pack."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from _threads import one_thread
from PIL import Image

#: The items of ``pack_converted`` (a subfolder item included).
PACK_SOURCES = ("a.png", "b.png", "sub/c.png")
#: The errored index row appended to ``pack_converted``'s index: never an item.
PACK_ERROR_ROW = {"output": "broken.nrep", "source": "broken.png", "status": "error",
                  "error": "a test's errored item"}  # fmt: skip


def _converted(root: Path, names: tuple[str, ...], side: int, salt: bytes, error_row) -> Path:
    """``neurep.convert`` (fast, 5 steps, one torch thread) of random ``side``-pixel PNGs at
    ``names`` (seeded by salt + name) into ``root/out``, ``error_row`` appended to the index."""
    import neurep

    source = root / "source"
    for name in names:
        rng = np.random.default_rng(zlib.crc32(salt + name.encode()))
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    out = root / "out"
    one_thread(lambda: neurep.convert(source, out, preset="fast", steps=5, progress=False))
    with open(out / "index.jsonl", "a", encoding="utf-8") as index:
        index.write(json.dumps(error_row) + "\n")
    return out


@pytest.fixture(scope="session")
def pack_converted(tmp_path_factory) -> Path:
    """A folder made by ``neurep.convert`` from three 16x16 PNGs (one in ``sub/``), with an
    errored row appended to its index. Read-only: copy it to change it."""
    root = tmp_path_factory.mktemp("pack_converted")
    return _converted(root, PACK_SOURCES, 16, b"", PACK_ERROR_ROW)


@pytest.fixture(scope="session")
def pack_file(pack_converted, tmp_path_factory) -> Path:
    """``pack_converted`` packed into ``packs/converted.h5``. Read-only: copy it to change it."""
    from neurep.data.packs import pack

    return pack(pack_converted, tmp_path_factory.mktemp("packs") / "converted.h5", progress=False)


# -- fixtures of the dataset, batch and loader tests (``data_`` prefix) ----------------------
#: The sources of ``data_converted``: seven 32x32 PNGs, one in a subfolder (an odd count,
#: so that a two-replica DistributedSampler pads).
DATA_SOURCES = ("p0.png", "p1.png", "p2.png", "p3.png", "p4.png", "p5.png", "sub/p6.png")
#: The errored index row appended to ``data_converted``'s index: never an item.
DATA_ERROR_ROW = {"output": "failed.nrep", "source": "failed.png", "status": "error",
                  "error": "a test's errored item"}  # fmt: skip


@pytest.fixture(scope="session")
def data_converted(tmp_path_factory) -> Path:
    """A folder made by ``neurep.convert`` from :data:`DATA_SOURCES` (random 32x32 PNGs, all
    different: their 2x2 embeddings differ too, where a 16x16 image's 1x1 embedding is
    standardised to zeros), with :data:`DATA_ERROR_ROW` appended to its index. Read-only."""
    root = tmp_path_factory.mktemp("data_converted")
    return _converted(root, DATA_SOURCES, 32, b"data-", DATA_ERROR_ROW)


@pytest.fixture(scope="session")
def data_pack(data_converted, tmp_path_factory) -> Path:
    """``data_converted`` packed into one HDF5 file. Read-only."""
    from neurep.data.packs import pack

    return pack(data_converted, tmp_path_factory.mktemp("data_packs") / "data.h5", progress=False)


@pytest.fixture(scope="session")
def data_modalities(tmp_path_factory) -> dict:
    """One tiny datum of each layout, fitted in memory (3 steps) and saved:
    name -> (the datum as saved, its ``.nrep`` path, the object it was fitted from).

    Names: ``image`` (16x16), ``wide_image`` (24x32), ``video`` (4 frames of 16x16),
    ``one_frame_video`` (1 frame), ``voxels`` (8x8x8 bool grid), ``array`` (20 floats),
    ``array_2d`` (6x10 floats)."""
    import neurep

    root = tmp_path_factory.mktemp("data_modalities")
    rng = np.random.default_rng(7)
    grid = np.zeros((8, 8, 8), bool)
    grid[2:6, 1:5, 3:7] = True
    objects = {
        "image": (rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), {}),
        "wide_image": (rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), {}),
        "video": (rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), {}),
        "one_frame_video": (rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), {}),
        "voxels": (grid, {}),
        "array": (rng.normal(5.0, 3.0, 20), {}),
        "array_2d": (rng.uniform(-40.0, 60.0, (6, 10)), {"modality": "array"}),
    }
    made = {}
    for name, (obj, options) in objects.items():
        datum = one_thread(lambda o=obj, k=options: neurep.fit(o, steps=3, progress=False, **k))
        path = root / f"{name}.nrep"
        datum.save(path)
        made[name] = (datum, path, obj)
    return made


#: The members of ``data_hostile_pack`` that are not .nrep files, and what they hold.
DATA_HOSTILE = ("p1.nrep: empty", "p3.nrep: noise", "p5.nrep: a .nrep whose zarr.json is not JSON")


def _garbage_metadata(nrep: bytes) -> bytes:
    """``nrep`` with its root ``zarr.json`` replaced by text that is not JSON."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(nrep)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            garbage = b'{"zarr_format": 3, "attributes": {"neurep": [1, 2'
            target.writestr(info, garbage if info.filename == "zarr.json" else source.read(info))
    return out.getvalue()


@pytest.fixture(scope="session")
def data_hostile_pack(data_converted, tmp_path_factory) -> Path:
    """A pack of ``data_converted`` whose members p1, p3 and p5 are hostile bytes (see
    :data:`DATA_HOSTILE`); their sha256 are right: the bytes read back as packed. Read-only."""
    import shutil

    from neurep.data.packs import pack

    root = tmp_path_factory.mktemp("data_hostile")
    folder = root / "folder"
    shutil.copytree(data_converted, folder)
    (folder / "p1.nrep").write_bytes(b"")
    (folder / "p3.nrep").write_bytes(np.random.default_rng(3).bytes(3000))
    (folder / "p5.nrep").write_bytes(_garbage_metadata((folder / "p5.nrep").read_bytes()))
    return pack(folder, root / "hostile.h5", progress=False)
