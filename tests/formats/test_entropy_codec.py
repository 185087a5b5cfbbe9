"""The ``ans`` weights codec (``neurep.formats._entropy``): lossless, exact and
deterministic, smaller than raw codes on weights that cluster, format 1.2's streams still
read, and a hostile stream is a FormatError."""

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
from neurep.formats._entropy import (
    ANS_CODEC,
    ANS_CODEC_FLOAT32,
    LAPLACE_CODEC,
    decode_codes,
    encode_codes,
)
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


def _shared_kernels(seed: int, shapes: list[tuple[int, ...]], share: float):
    """Weights whose kernel taps share a part (as trained transposed convolutions do)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, shape in enumerate(shapes):
        common = torch.randn(*shape[:2], *([1] * (len(shape) - 2)), generator=generator)
        own = torch.randn(shape, generator=generator)
        state[f"layer{index}.weight"] = 0.05 * (share * common + own)
    return state


def _compact(state: dict[str, torch.Tensor], precision: str):
    stored, qinfo = quantize_tensors(state, precision)
    stored, qinfo = compact_tensors(stored, qinfo, list(state))
    expected = {name: ("float32", tuple(t.shape)) for name, t in state.items()}
    return stored, qinfo, expected


CODEC_TENSORS = ("codes_ans", "codes_model", "codes_gains")
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
    assert coded_qinfo["codec"] in (ANS_CODEC, ANS_CODEC_FLOAT32, LAPLACE_CODEC)
    assert "codes" not in coded
    half = coded_qinfo["codec"] == ANS_CODEC
    assert coded["params"].dtype == (torch.float16 if half else torch.float32)
    # the default is the smaller of the two codecs
    forced = [
        encode_codes(stored, qinfo, expected, always=True, model=m)[0]
        for m in ("laplace", "log_quadratic")
    ]
    sizes = [sum(t.numel() * t.element_size() for t in f.values()) for f in forced]
    assert sum(t.numel() * t.element_size() for t in coded.values()) <= min(sizes) + 100
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
    coded_bytes = sum(
        coded[k].numel() * coded[k].element_size() for k in CODEC_TENSORS if k in coded
    )
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
    assert coded_qinfo.get("codec") in (ANS_CODEC, ANS_CODEC_FLOAT32) or coded == raw
    assert "codec" not in loaded_raw.metadata["weights"]["quantization"]
    assert "codes" in loaded_raw._reader.read_tensors()  # plain safetensors reads the codes
    # re-coding a loaded file is lossless both ways
    back = loaded_raw.save(tmp_path / "again.nrep", weights_codec="ans")
    assert back == coded
    assert np.array_equal(neurep.load(tmp_path / "again.nrep").decode(), datum.decode())
    with pytest.raises(ValueError, match="weights_codec"):
        datum.save(tmp_path / "x.nrep", weights_codec="zip")


def test_format_1_2_streams_still_decode():
    stored, qinfo, expected = _compact(_state(5, [(16, 8, 3, 3), (8, 16, 2, 2)], 0.05), "int8")
    old, old_qinfo = encode_codes(stored, qinfo, expected, always=True, model="laplace")
    assert old_qinfo["codec"] == LAPLACE_CODEC and "codes_gains" not in old
    assert old["params"].dtype == torch.float32 and old["codes_model"].numel() == 2
    decoded, plain = decode_codes(old, old_qinfo, expected, "old.nrep")
    assert plain == qinfo and torch.equal(decoded["codes"], stored["codes"])
    with pytest.raises(FormatError, match="codes_gains"):  # 1.2 has no gains tensor
        decode_codes(
            {**old, "codes_gains": torch.zeros(0, dtype=torch.int16)}, old_qinfo, expected, "x"
        )


def _models(coded) -> np.ndarray:
    """(q, u, predicted) per affine tensor of a 1.3 stream."""
    return coded["codes_model"].numpy().view(np.uint16).reshape(-1, 3)


def test_kernels_that_share_a_part_are_predicted_and_cost_fewer_bytes():
    shapes = [(24, 16, 4, 4), (16, 8, 2, 2)]
    stored, qinfo, expected = _compact(_shared_kernels(0, shapes, share=1.5), "int8")
    coded, coded_qinfo = encode_codes(stored, qinfo, expected)
    assert coded_qinfo["codec"] == ANS_CODEC  # smaller than 1.2's here
    assert _models(coded)[:, 2].tolist() == [1, 1]
    assert coded["codes_gains"].numel() == 15 + 3
    decoded, _ = decode_codes(coded, coded_qinfo, expected, "test")
    assert torch.equal(decoded["codes"], stored["codes"])
    # the same codes with no shared part between taps are not predicted
    plain_state = _shared_kernels(0, shapes, share=0.0)
    plain, _ = encode_codes(*_compact(plain_state, "int8")[:2], expected, model="log_quadratic")
    assert _models(plain)[:, 2].tolist() == [0, 0] and plain["codes_gains"].numel() == 0
    assert coded["codes_ans"].numel() < 0.97 * plain["codes_ans"].numel()


def test_gaussian_weights_get_a_bent_model_that_beats_the_laplace():
    from neurep.formats._entropy import _best_model, _grid_costs

    rng = np.random.default_rng(0)
    offsets = np.clip(np.rint(rng.normal(0, 30, 50_000)), -255, 255).astype(np.int64)
    _, u, bits = _best_model(offsets, 256)
    _, grid_u, costs = _grid_costs(256)
    laplace = float((costs[grid_u == 0] @ np.bincount(np.abs(offsets), minlength=256)).min())
    assert u > 0 and bits < laplace - 0.03 * offsets.size  # 0.03 bits a weight less


def test_a_datum_saves_under_each_codec_and_recodes_losslessly(tmp_path):
    y, x = np.mgrid[0:24, 0:40]
    image = (np.stack([x / 39, y / 23, (x + y) % 7 / 7], axis=-1) * 255).astype(np.uint8)
    datum = neurep.fit(image, preset="fast", steps=30, seed=0, progress=False)
    codecs = ("ans", "ans-1.2", "raw")
    sizes = {codec: datum.save(tmp_path / f"{codec}.nrep", weights_codec=codec) for codec in codecs}
    written = {}
    for codec in codecs:
        loaded = neurep.load(tmp_path / f"{codec}.nrep")
        assert np.array_equal(loaded.decode(), datum.decode())
        written[codec] = loaded.metadata["weights"]["quantization"].get("codec")
    assert written["ans-1.2"] == LAPLACE_CODEC and written["raw"] is None
    assert written["ans"] in (ANS_CODEC, ANS_CODEC_FLOAT32, LAPLACE_CODEC)  # the smaller
    assert sizes["ans"] <= sizes["ans-1.2"] < sizes["raw"]
    # a coded file keeps its coding under "ans"; "raw" and "ans-1.2" recode it
    old = neurep.load(tmp_path / "ans-1.2.nrep")
    assert old.save(tmp_path / "kept.nrep", weights_codec="ans") == sizes["ans-1.2"]
    raw = neurep.load(tmp_path / "raw.nrep")
    assert raw.save(tmp_path / "new.nrep", weights_codec="ans") == sizes["ans"]
    coded = neurep.load(tmp_path / "ans.nrep")
    assert coded.save(tmp_path / "back.nrep", weights_codec="ans-1.2") == sizes["ans-1.2"]
    assert coded.save(tmp_path / "plain.nrep", weights_codec="raw") == sizes["raw"]


@pytest.fixture
def coded_parts():
    state = _shared_kernels(3, [(16, 8, 3, 3), (8, 16, 2, 2)], share=1.5)
    stored, qinfo, expected = _compact(state, "int8")
    coded, coded_qinfo = encode_codes(stored, qinfo, expected, always=True, model="log_quadratic")
    assert coded_qinfo["codec"] == ANS_CODEC and _models(coded)[:, 2].tolist() == [1, 1]
    return coded, coded_qinfo, expected


def _flag(s, row: int, value: int):
    """codes_model with tensor ``row``'s predicted flag set to ``value``."""
    model = s["codes_model"].clone()
    model[3 * row + 2] = value
    return {**s, "codes_model": model}


@pytest.mark.parametrize(
    "damage",
    [
        lambda s, q: (s, {**q, "codec": {"name": "zstd", "configuration": {}}}),
        lambda s, q: (s, {**q, "codec": {**ANS_CODEC, "configuration": {"model": "gauss"}}}),
        lambda s, q: (s, {**q, "codec": ANS_CODEC_FLOAT32}),
        lambda s, q: (s, {**q, "codec": LAPLACE_CODEC}),
        lambda s, q: ({**s, "codes_model": s["codes_model"][:1]}, q),
        lambda s, q: ({**s, "codes_model": s["codes_model"].to(torch.int32)}, q),
        lambda s, q: ({**s, "codes_gains": s["codes_gains"][:-1]}, q),
        lambda s, q: ({**s, "codes_gains": s["codes_gains"].to(torch.int32)}, q),
        lambda s, q: ({k: v for k, v in s.items() if k != "codes_gains"}, q),
        lambda s, q: (_flag(s, 0, 2), q),
        lambda s, q: (_flag(s, 1, 0), q),
        lambda s, q: ({**s, "codes_ans": s["codes_ans"][:-1]}, q),
        lambda s, q: ({**s, "codes_ans": s["codes_ans"][:8]}, q),
        lambda s, q: ({**s, "codes_ans": torch.cat([s["codes_ans"], s["codes_ans"]])}, q),
        lambda s, q: ({k: v for k, v in s.items() if k != "codes_ans"}, q),
        lambda s, q: ({**s, "codes": s["codes_ans"]}, q),
        lambda s, q: ({**s, "params": s["params"][:2]}, q),
        lambda s, q: ({**s, "params": s["params"].to(torch.float32)}, q),
        lambda s, q: ({**s, "params": torch.full_like(s["params"], float("inf"))}, q),
        lambda s, q: (s, {**q, "precision": "float16"}),
    ],
    ids=[
        "unknown-codec",
        "unknown-model",
        "params-dtype-against-codec",
        "laplace-with-1.3-tensors",
        "short-model",
        "model-dtype",
        "short-gains",
        "gains-dtype",
        "no-gains",
        "bad-flag",
        "gains-left-over",
        "partial-word",
        "truncated-stream",
        "trailing-words",
        "no-stream",
        "raw-beside-codec",
        "short-params",
        "params-float32",
        "params-not-finite",
        "float-precision",
    ],
)
def test_malformed_coded_weights_are_format_errors(coded_parts, damage):
    stored, qinfo = damage(*coded_parts[:2])
    with pytest.raises(FormatError, match="entropy-coded weights"):
        decode_codes(stored, qinfo, coded_parts[2], "hostile.nrep")


def test_prediction_is_refused_on_tensors_it_cannot_apply_to():
    state = {"a.weight": 0.05 * torch.randn(16, 40), "b.weight": 0.05 * torch.randn(8, 8, 9, 9)}
    stored, qinfo, expected = _compact(state, "int8")  # 2-D, and 81 taps: never predicted
    coded, coded_qinfo = encode_codes(stored, qinfo, expected, always=True, model="log_quadratic")
    assert _models(coded)[:, 2].tolist() == [0, 0]
    for row, gains in ((0, 0), (1, 80)):
        hostile = {**_flag(coded, row, 1), "codes_gains": torch.zeros(gains, dtype=torch.int16)}
        with pytest.raises(FormatError, match="predicted"):
            decode_codes(hostile, coded_qinfo, expected, "hostile.nrep")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_streams_decode_to_valid_codes_or_raise_format_error(coded_parts, data):
    """Any words, models and gains at all: never another exception, and the work stays the
    layout's."""
    stored, qinfo, expected = coded_parts
    words = data.draw(st.binary(min_size=0, max_size=4 * 64).map(lambda b: b[: len(b) // 4 * 4]))
    entries = data.draw(st.lists(st.integers(0, 2**16 - 1), min_size=6, max_size=6))
    entries[2], entries[5] = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    gains = data.draw(
        st.lists(
            st.integers(-(2**15), 2**15 - 1),
            min_size=8 * entries[2] + 3 * entries[5],
            max_size=8 * entries[2] + 3 * entries[5],
        )
    )
    hostile = {
        **stored,
        "codes_ans": torch.frombuffer(bytearray(words), dtype=torch.uint8)
        if words
        else torch.zeros(0, dtype=torch.uint8),
        "codes_model": torch.from_numpy(np.asarray(entries, np.uint16).view(np.int16).copy()),
        "codes_gains": torch.tensor(gains, dtype=torch.int16),
    }
    try:
        decoded, _ = decode_codes(hostile, qinfo, expected, "hostile.nrep")
    except FormatError:
        return
    n = sum(math.prod(shape) for name, (_, shape) in expected.items() if name.endswith("weight"))
    assert decoded["codes"].dtype == torch.uint8 and decoded["codes"].numel() == n
