"""The ``ans`` weights codec of format 1.2 (``neurep.formats._entropy``): lossless, exact
and deterministic, smaller than raw codes on weights that cluster, and a hostile stream is
a FormatError."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.errors import FormatError
from neurep.formats._compact import compact_tensors
from neurep.formats._entropy import ANS_CODEC, decode_codes, encode_codes
from neurep.formats.quantize import quantize_tensors


def _state(seed: int, shapes: list[tuple[int, ...]], spread: float) -> dict[str, torch.Tensor]:
    """A state dict of Laplace-distributed weights (as trained decoders have), plus biases."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, shape in enumerate(shapes):
        uniform = torch.rand(shape, generator=generator) - 0.5
        state[f"layer{index}.weight"] = (
            -spread * torch.sign(uniform) * torch.log1p(-2 * uniform.abs())
        )
        state[f"layer{index}.bias"] = torch.rand(shape[0], generator=generator)
    return state


def _compact(state: dict[str, torch.Tensor], precision: str):
    stored, qinfo = quantize_tensors(state, precision)
    stored, qinfo = compact_tensors(stored, qinfo, list(state))
    expected = {name: ("float32", tuple(t.shape)) for name, t in state.items()}
    return stored, qinfo, expected


SHAPES = st.lists(
    st.tuples(st.integers(1, 24), st.integers(1, 12), st.integers(1, 3), st.integers(1, 3)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(
    shapes=SHAPES,
    precision=st.sampled_from(["int8", "int6", "int5", "int4"]),
    seed=st.integers(0, 2**16),
    spread=st.floats(0.001, 10.0),
)
def test_coding_is_lossless_and_deterministic(shapes, precision, seed, spread):
    stored, qinfo, expected = _compact(_state(seed, shapes, spread), precision)
    coded, coded_qinfo = encode_codes(stored, qinfo, expected)
    again, _ = encode_codes(stored, qinfo, expected)
    assert set(again) == set(coded) and all(torch.equal(again[k], coded[k]) for k in coded)
    if "codec" not in coded_qinfo:  # not worth coding: stored as it was
        assert coded is stored and coded_qinfo is qinfo
        return
    assert coded_qinfo["codec"] == ANS_CODEC and "codes" not in coded
    decoded, plain = decode_codes(coded, coded_qinfo, expected, "test")
    assert plain == qinfo
    assert set(decoded) == set(stored)
    assert all(torch.equal(decoded[k], stored[k]) for k in stored)


def test_coded_size_comes_within_a_few_percent_of_the_codes_entropy():
    """On Laplace weights the model costs little over the empirical entropy of each tensor's
    codes around their channel's zero (which the coder cannot beat without context)."""
    from neurep.formats._entropy import _affine_tensors, _centres

    state = _state(0, [(64, 64, 3, 3), (32, 64, 3, 3)], spread=0.05)
    stored, qinfo, expected = _compact(state, "int8")
    coded, _ = encode_codes(stored, qinfo, expected)
    codes, params = stored["codes"].numpy().astype(np.int64), stored["params"].numpy()
    entropy_bits = 0.0
    for start, n, shape, axis, params_at, _ in _affine_tensors(qinfo, expected):
        symbols = codes[start : start + n] - _centres(params, params_at, shape, axis, 256)
        counts = np.unique(symbols, return_counts=True)[1]
        entropy_bits += float(-(counts * np.log2(counts / n)).sum())
    coded_bytes = coded["codes_ans"].numel() + 2 * coded["codes_model"].numel()
    assert entropy_bits / 8 < coded_bytes < 1.03 * entropy_bits / 8 + 64
    assert coded_bytes < 0.9 * stored["codes"].numel()


def test_a_fitted_datum_saves_smaller_with_the_codec_and_decodes_the_same(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    datum = neurep.fit(image, preset="fast", steps=30, progress=False)
    coded = datum.save(tmp_path / "ans.nrep")
    raw = datum.save(tmp_path / "raw.nrep", weights_codec="raw")
    loaded_coded, loaded_raw = (
        neurep.load(tmp_path / "ans.nrep"),
        neurep.load(tmp_path / "raw.nrep"),
    )
    assert np.array_equal(loaded_coded.decode(), loaded_raw.decode())
    assert np.array_equal(loaded_coded.decode(), datum.decode())
    coded_qinfo = loaded_coded.metadata["weights"]["quantization"]
    assert coded_qinfo.get("codec") == ANS_CODEC or coded == raw
    assert "codec" not in loaded_raw.metadata["weights"]["quantization"]
    assert "codes" in loaded_raw._reader.read_tensors()  # plain safetensors reads the codes
    # re-coding a loaded file is lossless both ways
    back = loaded_raw.save(tmp_path / "again.nrep", weights_codec="ans")
    assert back == coded
    assert np.array_equal(neurep.load(tmp_path / "again.nrep").decode(), datum.decode())
    with pytest.raises(ValueError, match="weights_codec"):
        datum.save(tmp_path / "x.nrep", weights_codec="zip")


@pytest.fixture
def coded_parts():
    state = _state(3, [(16, 8, 3, 3), (8, 16, 3, 3)], spread=0.05)
    stored, qinfo, expected = _compact(state, "int8")
    coded, coded_qinfo = encode_codes(stored, qinfo, expected)
    assert "codec" in coded_qinfo
    return coded, coded_qinfo, expected


@pytest.mark.parametrize(
    "damage",
    [
        lambda s, q: (s, {**q, "codec": {"name": "zstd", "configuration": {}}}),
        lambda s, q: (s, {**q, "codec": {**ANS_CODEC, "configuration": {"model": "gauss"}}}),
        lambda s, q: ({**s, "codes_model": s["codes_model"][:1]}, q),
        lambda s, q: ({**s, "codes_model": s["codes_model"].to(torch.int32)}, q),
        lambda s, q: ({**s, "codes_ans": s["codes_ans"][:-1]}, q),
        lambda s, q: ({**s, "codes_ans": s["codes_ans"][:8]}, q),
        lambda s, q: ({**s, "codes_ans": torch.cat([s["codes_ans"], s["codes_ans"]])}, q),
        lambda s, q: ({k: v for k, v in s.items() if k != "codes_ans"}, q),
        lambda s, q: ({**s, "codes": s["codes_ans"]}, q),
        lambda s, q: ({**s, "params": s["params"][:2]}, q),
        lambda s, q: (s, {**q, "precision": "float16"}),
    ],
    ids=[
        "unknown-codec",
        "unknown-model",
        "short-model",
        "model-dtype",
        "partial-word",
        "truncated-stream",
        "trailing-words",
        "no-stream",
        "raw-beside-codec",
        "short-params",
        "float-precision",
    ],
)
def test_malformed_coded_weights_are_format_errors(coded_parts, damage):
    stored, qinfo = damage(*coded_parts[:2])
    with pytest.raises(FormatError, match="entropy-coded weights"):
        decode_codes(stored, qinfo, coded_parts[2], "hostile.nrep")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_streams_decode_to_valid_codes_or_raise_format_error(coded_parts, data):
    """Any words at all: never another exception, and the work stays the layout's."""
    stored, qinfo, expected = coded_parts
    words = data.draw(st.binary(min_size=0, max_size=4 * 64).map(lambda b: b[: len(b) // 4 * 4]))
    decays = data.draw(st.lists(st.integers(-(2**15), 2**15 - 1), min_size=2, max_size=2))
    hostile = {
        **stored,
        "codes_ans": torch.frombuffer(bytearray(words), dtype=torch.uint8)
        if words
        else torch.zeros(0, dtype=torch.uint8),
        "codes_model": torch.tensor(decays, dtype=torch.int16),
    }
    try:
        decoded, _ = decode_codes(hostile, qinfo, expected, "hostile.nrep")
    except FormatError:
        return
    n = sum(math.prod(shape) for name, (_, shape) in expected.items() if name.endswith("weight"))
    assert decoded["codes"].dtype == torch.uint8 and decoded["codes"].numel() == n
