"""Bounded JSON parsing: the quick depth walk of short documents and the full walk agree."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurep.errors import FormatError
from neurep.formats._json import check_json_bounds, load_json
from neurep.formats._limits import DEFAULT_LIMITS

LIMITS = dataclasses.replace(DEFAULT_LIMITS, max_json_depth=4)

documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)


def _verdict(call) -> type | None:
    try:
        call()
    except FormatError as error:
        return type(error)
    return None


@settings(max_examples=300, deadline=None)
@given(documents)
def test_parsing_refuses_exactly_what_the_full_walk_refuses(value):
    data = json.dumps(value).encode()
    full = _verdict(lambda: check_json_bounds(value, source="x", what="doc", limits=LIMITS))
    assert _verdict(lambda: load_json(data, source="x", what="doc", limits=LIMITS)) is full


@pytest.mark.parametrize(
    "text", [b"1e999", b"[1e999]", b'{"a": [[-1e400]]}', b"[[[[1]]]]", b'{"a":{"b":{"c":{}}}}']
)
def test_overflowing_numbers_and_deep_nesting_are_refused(text):
    with pytest.raises(FormatError):
        load_json(text, source="x", what="doc", limits=LIMITS)


def test_what_passes_comes_back_as_parsed():
    assert load_json(b'{"a": [1, 2.5, "s", null]}', source="x", what="d", limits=LIMITS) == {
        "a": [1, 2.5, "s", None]
    }
