"""Checks that passed are reused only for the very same input; failures are never kept."""

from __future__ import annotations

import pytest
from nrep_helpers import members_of

from neurep.errors import FormatError
from neurep.formats import open_nrep
from neurep.formats._limits import DEFAULT_LIMITS
from neurep.formats._memo import PassedChecks
from neurep.formats._weights import WEIGHTS_MEMBER, validate_safetensors


def test_a_result_is_computed_once_per_key_and_failures_every_time():
    memo: PassedChecks[int] = PassedChecks(size=2)
    calls = []

    def passing():
        calls.append(1)
        return 7

    assert memo.get("a", passing) == memo.get("a", passing) == 7
    assert len(calls) == 1

    def failing():
        calls.append(1)
        raise FormatError("bad")

    for _ in range(2):
        with pytest.raises(FormatError):
            memo.get("b", failing)
    assert len(calls) == 3
    memo.get("c", passing)
    memo.get("d", passing)  # full: everything dropped, then "d" kept
    memo.get("a", passing)
    assert len(calls) == 6


def _weights(small_file: bytes) -> bytes:
    return dict(members_of(small_file))[WEIGHTS_MEMBER]


def test_the_same_header_over_other_data_is_checked_again(small_file):
    data = _weights(small_file)
    described = validate_safetensors(data, source="x", limits=DEFAULT_LIMITS)
    assert validate_safetensors(data, source="x", limits=DEFAULT_LIMITS) == described
    with pytest.raises(FormatError, match="data section"):
        validate_safetensors(data[:-4], source="x", limits=DEFAULT_LIMITS)
    with pytest.raises(FormatError):
        validate_safetensors(data + b"\0" * 4, source="x", limits=DEFAULT_LIMITS)


def test_a_returned_description_is_the_callers_own(small_file):
    data = _weights(small_file)
    validate_safetensors(data, source="x", limits=DEFAULT_LIMITS).clear()
    assert validate_safetensors(data, source="x", limits=DEFAULT_LIMITS)


def test_a_kept_array_description_still_names_each_file(small_file):
    """Two readers of one file share the array description, and each names itself."""
    first, second = open_nrep(small_file, name="one.nrep"), open_nrep(small_file, name="two")
    assert first._arrays == second._arrays
    assert first.name == "one.nrep" and second.name == "two"
