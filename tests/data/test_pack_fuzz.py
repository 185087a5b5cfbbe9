"""Hostile packs: a pack with random bytes changed opens and reads items as the original
does, or raises neurep.FormatError; never another exception, never wrong bytes."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.data.packs import PackReader

_ORIGINAL: dict[Path, list[bytes]] = {}


def _original_items(pack: Path) -> list[bytes]:
    if pack not in _ORIGINAL:
        with PackReader(pack) as reader:
            _ORIGINAL[pack] = [reader.read_bytes(i) for i in range(len(reader))]
    return _ORIGINAL[pack]


def _data_span(pack: Path) -> tuple[int, int]:
    """Where the items' bytes (``/data``) lie in the file."""
    import h5py

    with h5py.File(pack, "r") as h5:
        start = h5["data"].id.get_offset()
        return start, start + h5["data"].shape[0]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_a_damaged_pack_reads_true_bytes_or_raises_format_error(pack_file, tmp_path, data):
    original = pack_file.read_bytes()
    items = _original_items(pack_file)
    damaged = bytearray(original)
    start, end = _data_span(pack_file)
    if not data.draw(st.booleans(), label="inside the items' bytes"):
        start, end = 0, len(damaged)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(start, end - 1), label="offset")
        damaged[at] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)), label="length")]
    path = tmp_path / f"damaged-{hashlib.sha256(damaged).hexdigest()[:12]}.h5"
    path.write_bytes(bytes(damaged))
    try:
        with PackReader(path) as reader:
            for index in range(len(reader)):
                try:
                    got = reader.read_bytes(index)
                except neurep.FormatError:
                    continue
                # whatever survives the checks is what was packed
                assert got in items
                with contextlib.suppress(neurep.FormatError):
                    reader.load(index).decode()
    except neurep.FormatError:
        pass
