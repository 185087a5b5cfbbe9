"""The per-process memo of validated files (``neurep.formats._opened``): a second open of
the same bytes skips validation, any change of the bytes is validated afresh, and readers
never share their metadata."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nrep_helpers import small_inputs

from neurep.errors import FormatError
from neurep.formats import ReadLimits, _metadata, _reader, open_nrep, write_nrep
from neurep.formats._opened import OPENED, OpenedFiles


@pytest.fixture
def counted_validations(monkeypatch):
    """The number of metadata validations made, as a one-item list."""
    calls = [0]
    original = _metadata.validate_metadata

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_reader, "validate_metadata", counting)
    OPENED.clear()
    return calls


def test_second_open_of_the_same_bytes_is_not_validated_again(small_file, counted_validations):
    first = open_nrep(small_file)
    second = open_nrep(small_file)
    assert counted_validations[0] == 1
    assert second.metadata == first.metadata
    assert second.array_names == first.array_names
    for name in first.array_names:
        assert (second.read_array(name) == first.read_array(name)).all()
    assert second.read_tensors().keys() == first.read_tensors().keys()


def test_readers_get_their_own_metadata(small_file, counted_validations):
    first = open_nrep(small_file)
    first.metadata["signal"]["shape"] = "changed by a caller"
    second = open_nrep(small_file)
    assert second.metadata["signal"]["shape"] != "changed by a caller"


def test_other_limits_are_validated_afresh(small_file, counted_validations):
    open_nrep(small_file)
    open_nrep(small_file, limits=ReadLimits(max_members=100))
    assert counted_validations[0] == 2


def test_a_file_rewritten_in_place_is_read_afresh(tmp_path, counted_validations):
    path = tmp_path / "x.nrep"
    metadata, arrays, tensors = small_inputs()
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    with open_nrep(path) as reader:
        assert reader.metadata["quality"]["psnr"] == 31.5
    metadata["quality"]["psnr"] = 12.25
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    with open_nrep(path) as reader:
        assert reader.metadata["quality"]["psnr"] == 12.25


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_a_bit_flip_after_a_good_open_still_raises_as_it_would_unmemoised(
    small_file, position, flip
):
    """The memo never answers for bytes other than those it validated."""
    open_nrep(small_file).close()  # memoised
    damaged = bytearray(small_file)
    damaged[position % len(damaged)] ^= flip
    outcomes = []
    for memo in (OPENED, None):
        if memo is None:
            OPENED.clear()
        try:
            with open_nrep(bytes(damaged)) as reader:
                for name in reader.array_names:
                    reader.read_array(name)
                reader.read_tensors()
            outcomes.append("ok")
        except FormatError as error:
            outcomes.append(type(error).__name__)
    assert outcomes[0] == outcomes[1]


def test_memo_keeps_at_most_its_size(small_file):
    memo = OpenedFiles(size=2)
    reader = open_nrep(small_file)
    for n in range(5):
        key = (bytes([n]) * 32, ReadLimits())
        memo.put(key, {}, reader.metadata, {}, {})
    assert len(memo) == 2
    assert memo.get((bytes([4]) * 32, ReadLimits())) is not None
    assert memo.get((bytes([0]) * 32, ReadLimits())) is None
