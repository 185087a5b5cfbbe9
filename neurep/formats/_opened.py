"""A per-process memo of ``.nrep`` files already validated, by their exact bytes.

A data loader's persistent workers open the same files every epoch, and for a small file
validating its directory and metadata costs more than reading its embedding. Validation is a
pure function of the file's bytes and the read limits, so its outcome is kept under a digest
of the whole file (BLAKE2b-256): a file whose bytes changed in any way is validated afresh.
Only in-memory sources are memoised (small files are read whole, pack members are bytes),
only files that raised no warning, and only successes; payload reads (embedding chunks,
weights) still check their CRC-32 and SHA-256 every time.
"""

from __future__ import annotations

import collections
import hashlib
import json
from typing import Any, NamedTuple

from neurep.formats._limits import ReadLimits
from neurep.formats._source import ByteSource

#: Files kept per process (least recently used dropped first); a kept file holds its
#: metadata as JSON and its member and array tables, a few kB.
MAX_OPENED_FILES = 2048


class OpenedState(NamedTuple):
    """What opening a file established: its members, metadata and arrays (all validated)."""

    members: dict[str, Any]
    metadata_json: str  # a private copy per reader: callers may change their metadata
    arrays: dict[str, Any]
    present_chunks: dict[str, list[tuple[int, ...]]]


class OpenedFiles:
    """Validated file states by ``(digest, limits)``; at most ``size`` kept."""

    def __init__(self, size: int = MAX_OPENED_FILES) -> None:
        self.size = size
        self._states: collections.OrderedDict[tuple[bytes, ReadLimits], OpenedState] = (
            collections.OrderedDict()
        )

    @staticmethod
    def key(source: ByteSource, limits: ReadLimits) -> tuple[bytes, ReadLimits] | None:
        """The memo key of ``source``'s bytes, or None when they are not in memory."""
        data = source.whole_bytes()
        if not data:
            return None
        return hashlib.blake2b(data, digest_size=32).digest(), limits

    def get(self, key: tuple[bytes, ReadLimits]) -> OpenedState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(
        self,
        key: tuple[bytes, ReadLimits],
        members: dict[str, Any],
        metadata: dict[str, Any],
        arrays: dict[str, Any],
        present_chunks: dict[str, list[tuple[int, ...]]],
    ) -> None:
        document = json.dumps(metadata)
        self._states[key] = OpenedState(members, document, arrays, present_chunks)
        self._states.move_to_end(key)
        while len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        """Forget every kept file (tests; or to free the memory)."""
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


def metadata_copy(state: OpenedState) -> dict[str, Any]:
    """A fresh copy of the kept metadata (a JSON round trip: C speed, no shared objects,
    and the validated document is plain JSON)."""
    return json.loads(state.metadata_json)


#: The process's memo, used by :class:`~neurep.formats.NrepReader`.
OPENED = OpenedFiles()
