"""The compiled schema check (fastjsonschema) gives jsonschema's verdict on every metadata.

Only its "valid" verdict is trusted, so a metadata it passes that jsonschema rejects would
be a hole in the hostile-input rules; the golden files' metadata, randomly mutated, must get
the same verdict from both.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurep.formats import open_nrep, validate_metadata
from neurep.formats._metadata import _passes_fast_check, _validator

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "files"
METADATA = [open_nrep(path).metadata for path in sorted(GOLDEN.glob("*.nrep"))]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["image", "int8", "conv_transpose", "1.1", "neurep", "mse", "bce"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every (path, value) inside a JSON tree, the root excluded."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*prefix, key), value
        if isinstance(value, dict | list) and value:
            yield from _paths(value, (*prefix, key))


@st.composite
def mutated_metadata(draw):
    metadata = copy.deepcopy(draw(st.sampled_from(METADATA)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(metadata))
        path, _ = draw(st.sampled_from(paths))
        parent = metadata
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return metadata


@pytest.mark.parametrize("metadata", METADATA, ids=[p.stem for p in sorted(GOLDEN.glob("*.nrep"))])
def test_both_checks_pass_every_golden_file(metadata):
    assert _passes_fast_check(metadata)
    assert _validator().is_valid(metadata)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_metadata())
def test_the_fast_check_agrees_with_jsonschema(metadata):
    assert _passes_fast_check(metadata) == _validator().is_valid(metadata)


def test_what_the_fast_check_rejects_is_still_worded_by_jsonschema():
    metadata = copy.deepcopy(METADATA[0])
    metadata["signal"]["shape"] = "big"
    assert not _passes_fast_check(metadata)
    with pytest.raises(ValueError, match=r"invalid metadata at signal/shape: 'big' is not of"):
        validate_metadata(metadata, source="x.nrep")
