"""The one-pass dequantisation of compact weights gives exactly the tensor-by-tensor values,
and leaves every layout or value it does not handle to that path."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurep.errors import FormatError
from neurep.formats import compact_tensors, dequantize_tensors, quantize_tensors
from neurep.formats._compact_vector import compact_vector
from neurep.models import build
from neurep.models.layout import flatten, parameter_layout, state_layout

DECODERS = [
    {
        "name": "conv_transpose",
        "configuration": {
            "ndim": 2,
            "in_channels": 16,
            "out_channels": 3,
            "strides": [4, 2, 2],
            "widths": [12, 8],
        },
    },
    {
        "name": "nerv",
        "configuration": {
            "ndim": 1,
            "in_channels": 4,
            "out_channels": 1,
            "strides": [2, 2],
            "widths": [6, 5],
        },
    },
    {
        "name": "conv_transpose",
        "configuration": {
            "ndim": 3,
            "in_channels": 8,
            "out_channels": 1,
            "strides": [2, 2],
            "widths": [4],
        },
    },
]


def _spread(tensor, axis):
    """Channels along ``axis`` at scales 1, 10, 100...: per-channel codes then win."""
    if axis is None or tensor.dim() <= axis:
        return tensor
    shape = [1] * tensor.dim()
    shape[axis] = tensor.shape[axis]
    return tensor * torch.logspace(0, 3, tensor.shape[axis]).reshape(shape)


def _stored(description, precision, seed, scale=1.0, axis=None):
    torch.manual_seed(seed)
    state = {k: _spread(v, axis) * scale for k, v in build(description).state_dict().items()}
    stored, qinfo = quantize_tensors(state, precision)
    return compact_tensors(stored, qinfo, list(state))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(range(len(DECODERS))),
    st.sampled_from(["int8", "float16", "bfloat16", "float32"]),
    st.integers(0, 2**16),
    st.sampled_from([1e-3, 1.0, 50.0]),
    st.sampled_from([None, 0, 1]),
)
def test_the_vector_equals_the_tensor_by_tensor_values(which, precision, seed, scale, axis):
    description = DECODERS[which]
    stored, qinfo = _stored(description, precision, seed, scale, axis)
    described = state_layout(description)
    vector = compact_vector(stored, qinfo, described)
    assert vector is not None
    reference = flatten(dequantize_tensors(stored, qinfo, described), parameter_layout(description))
    assert vector.dtype == reference.dtype and vector.shape == reference.shape
    assert (vector == reference).all()


def test_per_channel_layouts_are_covered():
    layouts = {_stored(DECODERS[0], "int8", 0, axis=axis)[1]["layout"] for axis in (0, 1)}
    assert any("0" in layout for layout in layouts) and any("1" in layout for layout in layouts)


@pytest.mark.parametrize("precision", ["int4", "int6", "int7"])
def test_packed_codes_are_left_to_the_tensor_by_tensor_path(precision):
    stored, qinfo = _stored(DECODERS[0], precision, 0)
    assert compact_vector(stored, qinfo, state_layout(DECODERS[0])) is None


def test_version_one_is_left_to_the_tensor_by_tensor_path():
    torch.manual_seed(0)
    stored, qinfo = quantize_tensors(build(DECODERS[0]).state_dict(), "int8")
    assert compact_vector(stored, qinfo, state_layout(DECODERS[0])) is None


@pytest.mark.parametrize(
    "damage",
    ["negative scale", "nan parameter", "nan cast", "overflowing scale"],
)
def test_bad_values_go_back_to_the_path_that_words_the_error(damage):
    stored, qinfo = _stored(DECODERS[0], "int8", 0)
    stored = {k: v.clone() for k, v in stored.items()}
    if damage == "negative scale":
        stored["params"][0] = -1.0
    elif damage == "nan parameter":
        stored["params"][1] = float("nan")
    elif damage == "nan cast":
        stored["float16"][0] = float("nan")
    else:
        stored["params"][0] = 3e38
        stored["codes"][:] = 255
    described = state_layout(DECODERS[0])
    assert compact_vector(stored, qinfo, described) is None
    if damage != "overflowing scale":
        with pytest.raises(FormatError):
            dequantize_tensors(stored, qinfo, described)


def test_malformed_stored_tensors_are_refused():
    stored, qinfo = _stored(DECODERS[0], "int8", 0)
    stored = dict(stored, codes=stored["codes"][:-1])
    with pytest.raises(FormatError, match="codes"):
        compact_vector(stored, qinfo, state_layout(DECODERS[0]))
