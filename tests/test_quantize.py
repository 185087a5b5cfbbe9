"""Behaviour of neurep.formats.quantize: error bounds, auto granularity, storage, hostile qinfo."""

from __future__ import annotations

import copy
import hashlib
import json
import math

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurep.errors import FormatError
from neurep.formats import dequantize_array, dequantize_tensors, quantize_array, quantize_tensors
from neurep.formats._qinfo import expected_stored
from neurep.formats.quantize import PARAMS_TENSOR, PRECISIONS, _affine

INT_PRECISIONS = [p for p in PRECISIONS if p.startswith("int")]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite32 = st.floats(-1e4, 1e4, allow_nan=False, width=32)
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9)
arrays32 = hnp.arrays(np.float32, shapes, elements=finite32)
# Shapes that quantize_tensors codes under an integer precision (2-3 dims, >= 64 elements).
coded_shapes = st.tuples(st.integers(8, 12), st.integers(8, 12), st.integers(1, 3)).map(
    lambda s: s if s[2] > 1 else s[:2]
)
coded32 = hnp.arrays(np.float32, coded_shapes, elements=finite32)
log_gains = st.lists(st.floats(-6, 3), min_size=12, max_size=12)


def _channel_scales(stored: dict, entry: dict) -> np.ndarray:
    """Per-element scale of an affine entry, broadcastable to the tensor's shape."""
    start = entry["params"]
    c = entry["shape"][entry["axis"]] if entry["granularity"] == "channel" else 1
    scale = stored[PARAMS_TENSOR].numpy()[start : start + c]
    shape = [1] * len(entry["shape"])
    if entry["granularity"] == "channel":
        shape[entry["axis"]] = -1
    return scale.reshape(shape)


def _row_gains(x: np.ndarray, log_gain: list[float]) -> np.ndarray:
    """x (C, ...) float32 with row c multiplied by exp(log_gain[c]): channels of other ranges."""
    gain = np.exp(np.array(log_gain[: x.shape[0]], np.float32))
    return (x * gain.reshape((-1,) + (1,) * (x.ndim - 1))).astype(np.float32)


def _sse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).sum())


def _roundtrip_json(q: dict) -> dict:
    return json.loads(json.dumps(q, allow_nan=False))


# ---------------------------------------------------------------------------------------------
# error bounds
# ---------------------------------------------------------------------------------------------


@FAST
@given(x=coded32, log_gain=log_gains, precision=st.sampled_from(INT_PRECISIONS))
def test_int_codes_error_at_most_half_a_step(x, log_gain, precision):
    x = _row_gains(x, log_gain)  # so that per-channel codes are checked too
    t = torch.from_numpy(x)
    stored, q = quantize_tensors({"w": t}, precision)
    entry = q["tensors"]["w"]
    assert entry["method"] == "affine" and entry["bits"] == int(precision[3:])
    back = dequantize_tensors(stored, q)["w"].numpy()
    scale = _channel_scales(stored, entry).astype(np.float64)
    ulp = 2.0 * np.finfo(np.float32).eps * np.abs(x.astype(np.float64))
    err = np.abs(back.astype(np.float64) - x)
    assert np.all(err <= scale / 2 * (1 + 1e-9) + ulp + 1e-30)


@FAST
@given(x=coded32, precision=st.sampled_from(INT_PRECISIONS))
def test_scale_and_offset_cover_the_data_exactly(x, precision):
    # offset rounds down and scale up, so no value is clamped beyond half a step.
    stored, q = quantize_tensors({"w": torch.from_numpy(x)}, precision)
    entry = q["tensors"]["w"]
    levels = 2 ** entry["bits"] - 1
    scale = _channel_scales(stored, entry).astype(np.float64)
    offset = _channel_scales({PARAMS_TENSOR: stored[PARAMS_TENSOR][scale.size :]}, entry)
    x64 = x.astype(np.float64)
    assert np.all(offset <= x64) and np.all(x64 <= offset.astype(np.float64) + scale * levels)


@FAST
@given(
    x=hnp.arrays(np.float32, coded_shapes, elements=st.floats(-1, 1, width=32)),
    log_gain=log_gains,
    precision=st.sampled_from(INT_PRECISIONS),
)
def test_parameters_lie_on_float16_values_unless_float16_would_hold_them_badly(
    x, log_gain, precision
):
    # Exact float16 parameters are what lets the codec store them in half the bytes.
    t = _row_gains(x, log_gain)
    stored, q = quantize_tensors({"w": torch.from_numpy(t)}, precision)
    params = stored[PARAMS_TENSOR].numpy()
    scale = _channel_scales(stored, q["tensors"]["w"]).ravel()
    on_half = np.array_equal(params.astype(np.float16).astype(np.float32), params)
    tiny = bool(np.any((scale > 0) & (scale < 2.0**-13)))  # float16 rounds up, hence 2**-13
    if not tiny:  # every step a normal float16 number: nothing kept the parameters float32
        assert on_half


def test_parameters_stay_float32_where_float16_would_lose_them():
    tiny = torch.full((8, 8), 1e-6) * torch.arange(64.0).reshape(8, 8)  # steps below 2**-14
    huge = torch.linspace(7e4, 9e4, 64).reshape(8, 8)  # beyond float16's range
    for weights in (tiny, huge):
        stored, _ = quantize_tensors({"w": weights}, "int8")
        params = stored[PARAMS_TENSOR].numpy()
        with np.errstate(over="ignore"):
            assert not np.array_equal(params.astype(np.float16).astype(np.float32), params)
        back = dequantize_tensors(stored, quantize_tensors({"w": weights}, "int8")[1])["w"]
        step = float(params[0])
        assert torch.all((back - weights).abs() <= step / 2 * (1 + 1e-6) + 1e-12)


def test_int6_codes_of_a_ramp_are_its_indices():
    # Golden: a ramp of 64 values over [0, 1] is exactly the 64 levels of int6. (In an (8, 8)
    # ramp, each row is itself an exact ramp, so per-channel codes would win.)
    x = (np.arange(64, dtype=np.float64) / 63).astype(np.float32).reshape(4, 4, 4)
    stored, q = quantize_tensors({"w": torch.from_numpy(x)}, "int6")
    assert q["tensors"]["w"]["granularity"] == "tensor"
    scale, offset = stored[PARAMS_TENSOR].tolist()
    assert offset == 0.0 and scale == pytest.approx(1 / 63, rel=2**-10)
    assert np.float16(scale) == scale  # parameters lie on float16 values
    codes = np.unpackbits(stored["w"].numpy(), bitorder="little").reshape(64, 6)
    values = (codes * (1 << np.arange(6))).sum(axis=1)
    assert values.tolist() == list(range(64))


def test_int4_packs_two_codes_per_byte_low_nibble_first():
    x = torch.tensor([0.0, 15.0] * 32).reshape(8, 8)  # codes 0, 15, 0, 15, ...
    stored, q = quantize_tensors({"w": x}, "int4")
    assert stored["w"].dtype == torch.uint8 and stored["w"].shape == (32,)
    assert stored["w"].tolist() == [0xF0] * 32
    assert torch.equal(dequantize_tensors(stored, q)["w"], x)


@pytest.mark.parametrize("precision", INT_PRECISIONS)
def test_packed_codes_take_bits_over_eight_of_the_bytes(precision):
    bits = int(precision[3:])
    x = torch.randn(33, 7, generator=torch.Generator().manual_seed(0))
    stored, _ = quantize_tensors({"w": x}, precision)
    assert stored["w"].numel() == math.ceil(33 * 7 * bits / 8)


@FAST
@given(x=arrays32)
def test_float32_is_exact(x):
    stored, q = quantize_tensors({"w": torch.from_numpy(x)}, "float32")
    assert stored["w"].dtype == torch.float32
    assert np.array_equal(dequantize_tensors(stored, q)["w"].numpy(), x)


@FAST
@given(x=arrays32, precision=st.sampled_from(["float16", "bfloat16"]))
def test_half_precisions_round_within_their_epsilon(x, precision):
    stored, q = quantize_tensors({"w": torch.from_numpy(x)}, precision)
    assert stored["w"].dtype == getattr(torch, precision)
    back = dequantize_tensors(stored, q)["w"].numpy().astype(np.float64)
    rel = 2.0**-11 if precision == "float16" else 2.0**-8  # half an ulp at mantissa 10 / 7 bits
    tiny = 2.0**-25 if precision == "float16" else 2.0**-134  # half the smallest subnormal
    assert np.all(np.abs(back - x) <= rel * np.abs(x) + tiny)


# ---------------------------------------------------------------------------------------------
# granularity "auto"
# ---------------------------------------------------------------------------------------------


def _forced_sse(x: np.ndarray, bits: int, axis: int | None) -> float:
    """Squared error of codes per tensor (axis None) or per channel along ``axis``."""
    rows = x.reshape(1, -1) if axis is None else np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return _affine(rows, bits, half=True)[3]


@FAST
@given(
    x=hnp.arrays(np.float32, coded_shapes, elements=st.floats(-1, 1, width=32)),
    log_gain=log_gains,
    precision=st.sampled_from(INT_PRECISIONS),
)
def test_auto_picks_channel_only_when_it_is_more_accurate(x, log_gain, precision):
    t = torch.from_numpy(_row_gains(x, log_gain))
    bits = int(precision[3:])
    stored, q = quantize_tensors({"w": t}, precision)
    entry = q["tensors"]["w"]
    sse_auto = _sse(dequantize_tensors(stored, q)["w"], t)
    sse_tensor = _forced_sse(t.numpy(), bits, None)
    if entry["granularity"] == "channel":  # never chosen unless it is more accurate
        assert sse_auto < sse_tensor
        assert sse_auto == pytest.approx(_forced_sse(t.numpy(), bits, entry["axis"]), rel=1e-9)
    else:
        assert sse_auto == pytest.approx(sse_tensor, rel=1e-9)


def test_auto_finds_the_output_channels_of_a_conv_transpose_weight():
    # ConvTranspose weights are (in, out, kh, kw): the output channels are axis 1.
    g = torch.Generator().manual_seed(3)
    w = torch.randn(32, 48, 3, 3, generator=g) * torch.logspace(-3, 0, 48).reshape(1, 48, 1, 1)
    stored, q = quantize_tensors({"w": w}, "int6")
    entry = q["tensors"]["w"]
    assert entry["granularity"] == "channel" and entry["axis"] == 1
    assert stored[PARAMS_TENSOR].shape == (2 * 48,)
    back = dequantize_tensors(stored, _roundtrip_json(q))["w"]
    scale = stored[PARAMS_TENSOR][:48].reshape(1, 48, 1, 1)
    assert torch.all((back - w).abs() <= scale / 2 * (1 + 1e-6) + 1e-7)


def test_a_vector_array_is_coded_per_tensor():
    _, q = quantize_array(np.random.default_rng(0).normal(size=80).astype(np.float32), "int8")
    assert q["granularity"] == "tensor"


def test_auto_picks_channel_for_channels_of_very_different_ranges():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(32, 64, 3, 3, generator=g) * torch.logspace(-3, 0, 32).reshape(32, 1, 1, 1)
    _, q = quantize_tensors({"w": w}, "int8")
    assert q["tensors"]["w"]["granularity"] == "channel"


def test_auto_keeps_per_tensor_when_channel_parameters_cost_more_than_they_save():
    # 64 channels of 2 elements: per-channel is more accurate but costs 4 bytes per element.
    w = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    _, q_auto = quantize_tensors({"w": w}, "int8")
    assert _forced_sse(w.numpy(), 8, 0) < _forced_sse(w.numpy(), 8, None)
    assert q_auto["tensors"]["w"]["granularity"] == "tensor"


# ---------------------------------------------------------------------------------------------
# what is stored
# ---------------------------------------------------------------------------------------------


def _state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "dec.0.weight": torch.randn(16, 8, 3, 3, generator=g),
        "dec.0.bias": torch.randn(16, generator=g),
        "dec.1.weight": torch.randn(3, 16, 1, 1, generator=g).double(),
        "head.weight": torch.randn(100, generator=g) * 1e5,
        "steps": torch.tensor(7),
    }


@pytest.mark.parametrize("precision", PRECISIONS)
def test_plain_safetensors_reads_what_is_stored(precision, tmp_path):
    sd = _state_dict()
    stored, q = quantize_tensors(sd, precision)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(stored, path)
    assert path.stat().st_size == len(safetensors.torch.save(stored))
    loaded = safetensors.torch.load_file(path)
    q2 = _roundtrip_json(q)
    assert q2 == q
    a, b = dequantize_tensors(stored, q), dequantize_tensors(loaded, q2)
    assert a.keys() == sd.keys()
    for name in sd:
        assert torch.equal(a[name], b[name])
        assert a[name].shape == sd[name].shape
        assert a[name].dtype == (torch.float32 if sd[name].is_floating_point() else sd[name].dtype)
    if precision != "bfloat16":  # numpy has no bfloat16; everything else is readable without torch
        assert safetensors.numpy.load_file(path).keys() == stored.keys()


def _unpacked(stored: dict, q: dict, name: str) -> tuple[dict, dict]:
    """The same codes as the format also allows them: one uint8 per code, original shape."""
    e = q["tensors"][name]
    n, bits = math.prod(e["shape"]), e["bits"]
    stream = np.unpackbits(stored[name].numpy(), bitorder="little")[: n * bits].reshape(n, bits)
    codes = (stream * (1 << np.arange(bits))).sum(axis=1).astype(np.uint8).reshape(e["shape"])
    q = copy.deepcopy(q)
    q["tensors"][name]["packed"] = False
    return {**stored, name: torch.from_numpy(codes)}, q


@pytest.mark.parametrize("precision", ["int7", "int4"])
def test_unpacked_codes_of_fewer_bits_decode_the_same(precision):
    # neurep packs codes of < 8 bits, but files may hold them unpacked (docs/FORMAT.md).
    packed, q_packed = quantize_tensors(_state_dict(), precision)
    plain, q_plain = _unpacked(packed, q_packed, "dec.0.weight")
    a, b = dequantize_tensors(packed, q_packed), dequantize_tensors(plain, q_plain)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain["dec.0.weight"][0, 0, 0, 0] = 2 ** int(precision[3:])  # a code wider than bits
    with pytest.raises(FormatError, match="bits"):
        dequantize_tensors(plain, q_plain)


def test_vectors_stay_float16():
    sd = {"bias": torch.randn(256), "w": torch.randn(16, 16)}
    stored, q = quantize_tensors(sd, "int6")
    assert stored["bias"].dtype == torch.float16 and q["tensors"]["w"]["method"] == "affine"


@pytest.mark.parametrize("precision", ["int8", "int5"])
def test_documented_layout_decodes_without_neurep(precision, tmp_path):
    # An independent decoder written from the module docstring, reading with safetensors.numpy.
    sd = _state_dict()
    sd["tconv.weight"] = torch.randn(32, 40, 9) * torch.logspace(-3, 0, 40).reshape(1, 40, 1)
    stored, q = quantize_tensors(sd, precision)
    assert q["tensors"]["tconv.weight"]["axis"] == 1  # the per-channel path is covered
    safetensors.torch.save_file(stored, tmp_path / "w.safetensors")
    raw = safetensors.numpy.load_file(tmp_path / "w.safetensors")
    q = _roundtrip_json(q)
    P = raw[q["params_tensor"]].astype(np.float64)
    ours = dequantize_tensors(stored, q)
    for name, e in q["tensors"].items():
        if e["method"] != "affine":
            continue
        n, bits = math.prod(e["shape"]), e["bits"]
        data = raw[e["stored"]].reshape(-1)
        if e["packed"]:
            stream = [(int(data[j // 8]) >> (j % 8)) & 1 for j in range(n * bits)]
            codes = [sum(stream[i * bits + k] << k for k in range(bits)) for i in range(n)]
        else:
            codes = data.tolist()
        C = e["shape"][e["axis"]] if e["granularity"] == "channel" else 1
        scale, offset = P[e["params"] : e["params"] + C], P[e["params"] + C : e["params"] + 2 * C]
        index = np.indices(e["shape"]).reshape(len(e["shape"]), -1)
        c = index[e["axis"]] if C > 1 else np.zeros(n, int)
        x = (offset[c] + scale[c] * np.array(codes, np.float64)).astype(np.float32)
        assert np.array_equal(x.reshape(e["shape"]), ours[name].numpy()), name


def test_small_tensors_stay_float16_and_large_values_float32():
    sd = {"bias": torch.tensor([1.0, -2.0, 3.5]), "big": torch.tensor([1e6, 2.0])}
    stored, q = quantize_tensors(sd, "int4")
    assert stored["bias"].dtype == torch.float16 and stored["big"].dtype == torch.float32
    out = dequantize_tensors(stored, q)
    assert torch.equal(out["bias"], sd["bias"]) and torch.equal(out["big"], sd["big"])


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_tied_weights_are_stored_as_copies(precision):
    w = torch.randn(4, 8)
    sd = {"enc.weight": w, "dec.weight": w, "bias": torch.zeros(4), "n": torch.tensor(1)}
    stored, q = quantize_tensors(sd, precision)
    safetensors.torch.save(stored)  # raises on tensors that share memory
    before = dequantize_tensors(stored, q)
    w.add_(1.0)
    sd["n"].add_(1)
    after = dequantize_tensors(stored, q)
    assert torch.equal(after["dec.weight"], before["dec.weight"]) and after["n"].item() == 1


def test_integer_buffers_come_back_unchanged():
    sd = {"count": torch.tensor([3, 4], dtype=torch.int64)}
    stored, q = quantize_tensors(sd, "int8")
    out = dequantize_tensors(stored, q)["count"]
    assert out.dtype == torch.int64 and out.tolist() == [3, 4]


@pytest.mark.parametrize("precision", ["int8", "int4", "float16"])
def test_same_input_gives_bit_identical_output(precision):
    a_stored, a_q = quantize_tensors(_state_dict(), precision)
    b_stored, b_q = quantize_tensors(dict(reversed(list(_state_dict().items()))), precision)
    assert a_q == b_q
    assert safetensors.torch.save(a_stored) == safetensors.torch.save(b_stored)
    a, b = dequantize_tensors(a_stored, a_q), dequantize_tensors(b_stored, b_q)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("precision", "digest"),
    [
        ("int8", "9c2a6c134254aa4d"),
        ("int6", "1149a6afcf6df9b2"),
        ("int4", "9a33ccc21c959822"),
        ("float16", "46e6a84e4c6200c3"),
    ],
)
def test_stored_bytes_are_pinned(precision, digest):
    # Golden: the stored bytes of a fixed input, the same on every machine. A change here
    # changes what new files hold: only on purpose (the int digests moved when parameters
    # went onto float16 values; how a reader decodes them is unchanged).
    rng = np.random.default_rng(2026)
    gain = np.logspace(-2, 0, 24, dtype=np.float32).reshape(24, 1, 1, 1)
    sd = {
        "a": torch.from_numpy(rng.normal(size=(24, 16, 3, 3)).astype(np.float32) * gain),
        "b": torch.from_numpy(rng.normal(size=(16, 40)).astype(np.float32)),
        "c": torch.from_numpy(rng.normal(size=(40,)).astype(np.float32)),
    }
    stored, _ = quantize_tensors(sd, precision)
    h = hashlib.sha256()
    for name in sorted(stored):
        h.update(name.encode())
        h.update(stored[name].contiguous().view(torch.uint8).numpy().tobytes())
    assert h.hexdigest()[:16] == digest


def test_int4_file_is_much_smaller_than_int8_and_float16():
    sd = {"w": torch.randn(64, 64, 3, 3, generator=torch.Generator().manual_seed(0))}
    stored = {p: quantize_tensors(sd, p)[0] for p in ("float16", "int8", "int4")}
    sizes = {p: len(safetensors.torch.save(tensors)) for p, tensors in stored.items()}
    assert sizes["int4"] < 0.55 * sizes["int8"] < 0.3 * sizes["float16"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad):
    with pytest.raises(ValueError, match="non-finite"):
        quantize_tensors({"w": torch.tensor([[1.0, bad]] * 40)}, "int8")


def test_reserved_name_and_unknown_precision_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        quantize_tensors({PARAMS_TENSOR: torch.zeros(3)}, "int8")
    with pytest.raises(ValueError, match="precision"):
        quantize_tensors({"w": torch.zeros(3)}, "int3")


# ---------------------------------------------------------------------------------------------
# hostile qinfo and tampered tensors
# ---------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate(obj, path, action, value):
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@settings(max_examples=300, deadline=None)
@given(data=st.data(), precision=st.sampled_from(PRECISIONS))
def test_any_mutation_of_qinfo_gives_format_error_or_a_valid_decode(data, precision):
    stored, q = quantize_tensors(_state_dict(), precision)
    paths = list(_paths(q))
    path = data.draw(st.sampled_from(paths))
    action = data.draw(st.sampled_from(["delete", "replace"] if path else ["replace"]))
    bad = _mutate(copy.deepcopy(q), path, action, data.draw(json_values))
    try:
        out = dequantize_tensors(stored, bad)
    except FormatError:
        return
    assert all(torch.isfinite(v.float()).all() for v in out.values())


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(), precision=st.sampled_from(PRECISIONS), g=st.sampled_from(["tensor", "channel"])
)
def test_any_mutation_of_array_qinfo_gives_format_error_or_a_valid_decode(data, precision, g):
    # Channels far apart (and enough elements to pay for their parameters) are coded per channel.
    shape, offset = ((2, 3, 5), [0, 0, 0]) if g == "tensor" else ((1, 2, 8, 8), [0, 1e3])
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    x += np.array(offset, np.float32).reshape((1, -1) + (1,) * (len(shape) - 2))
    codes, q = quantize_array(x, precision, axis=1)
    assert q.get("granularity", g) == g  # float precisions have none
    path = data.draw(st.sampled_from(list(_paths(q))))
    action = data.draw(st.sampled_from(["delete", "replace"] if path else ["replace"]))
    bad = _mutate(copy.deepcopy(q), path, action, data.draw(json_values))
    try:
        out = dequantize_array(codes, bad)
    except FormatError:
        return
    assert out.dtype == np.float32 and np.isfinite(out).all()


def _share_params(q: dict, a: str, b: str) -> None:
    ea, eb = q["tensors"][a], q["tensors"][b]
    assert ea["granularity"] == eb["granularity"] == "tensor"
    ea["params"] = eb["params"]


def _int6_case():
    sd = {
        **_state_dict(),
        "dec.2.weight": torch.randn(8, 16, generator=torch.Generator().manual_seed(5)),
        "dec.3.weight": torch.randn(8, 16, generator=torch.Generator().manual_seed(6)),
    }
    return quantize_tensors(sd, "int6")  # every affine entry is per-tensor


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s, q: q["tensors"]["dec.0.weight"].update(bits=8),
        lambda s, q: q["tensors"]["dec.0.weight"].update(bits=9, packed=False),
        lambda s, q: q["tensors"]["dec.0.weight"].update(shape=[16, 8, 3, 4]),
        lambda s, q: q["tensors"]["dec.0.weight"].update(shape=[2**62, 2**62]),
        lambda s, q: q["tensors"]["dec.0.weight"].update(stored="nope"),
        lambda s, q: q["tensors"]["dec.0.weight"].update(granularity="channel", axis=3),
        lambda s, q: q["tensors"]["dec.0.weight"].update(
            params=q["tensors"]["dec.0.weight"]["params"] + 1
        ),
        lambda s, q: q.update(params_tensor="dec.0.bias"),
        lambda s, q: q["tensors"]["dec.0.bias"].update(stored_dtype="int8"),
        lambda s, q: q["tensors"].pop("dec.0.bias"),
        lambda s, q: q.update(version=2),
        lambda s, q: s.pop("dec.0.weight"),
        lambda s, q: s.update(extra=torch.zeros(1)),
        lambda s, q: s.update({"dec.0.weight": s["dec.0.weight"].to(torch.int16)}),
        lambda s, q: s[PARAMS_TENSOR].__setitem__(0, float("nan")),
        lambda s, q: s[PARAMS_TENSOR].__setitem__(0, -1.0),
        lambda s, q: s[PARAMS_TENSOR].__setitem__(-1, float("nan")),  # an offset
        lambda s, q: s[PARAMS_TENSOR].__setitem__(-1, float("inf")),
        # two entries sharing one parameter slice (a gap before the last slice, same total)
        lambda s, q: _share_params(q, "dec.2.weight", "dec.0.weight"),
        lambda s, q: q["tensors"]["dec.0.weight"].update(packed="yes"),
        lambda s, q: s["dec.0.bias"].__setitem__(0, float("inf")),
    ],
)
def test_tampered_qinfo_or_tensors_raise_format_error(tamper):
    stored, q = _int6_case()
    stored = {k: v.clone() for k, v in stored.items()}
    tamper(stored, q)
    with pytest.raises(FormatError):
        dequantize_tensors(stored, q)


def test_expected_stored_matches_the_safetensors_header():
    stored, q = quantize_tensors(_state_dict(), "int5")
    want = {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in stored.items()}
    assert expected_stored(q) == want


# ---------------------------------------------------------------------------------------------
# one array (embedding)
# ---------------------------------------------------------------------------------------------


@FAST
@given(x=arrays32, precision=st.sampled_from(INT_PRECISIONS))
def test_array_codes_error_at_most_half_a_step(x, precision):
    codes, q = quantize_array(x, precision, axis=-1)
    q = _roundtrip_json(q)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert int(codes.max()) < 2 ** int(precision[3:])
    back = dequantize_array(codes, q).astype(np.float64)
    scale = np.asarray(q["scale"], np.float64)
    if q["granularity"] == "channel":
        scale = scale.reshape((1,) * (x.ndim - 1) + (-1,))
    ulp = 2.0 * np.finfo(np.float32).eps * np.abs(x.astype(np.float64))
    assert np.all(np.abs(back - x) <= scale / 2 * (1 + 1e-9) + ulp + 1e-30)


@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_array_float_precisions(precision):
    x = np.random.default_rng(0).normal(size=(2, 16, 4, 6)).astype(np.float32)
    codes, q = quantize_array(x, precision)
    assert codes.dtype == {"float32": np.float32, "float16": np.float16}.get(precision, np.uint16)
    back = dequantize_array(codes, _roundtrip_json(q))
    expect = torch.from_numpy(x).to(getattr(torch, precision)).float().numpy()
    assert back.dtype == np.float32 and np.array_equal(back, expect)


def test_array_per_channel_along_the_embedding_axis():
    x = np.random.default_rng(0).normal(size=(2, 16, 8, 12)).astype(np.float32)
    x *= np.logspace(-3, 1, 16, dtype=np.float32).reshape(1, 16, 1, 1)
    codes, q = quantize_array(x, "int6", axis=1)
    assert q["granularity"] == "channel" and q["axis"] == 1 and len(q["scale"]) == 16
    back = dequantize_array(codes, q)
    step = np.asarray(q["scale"], np.float32).reshape(1, 16, 1, 1)
    assert np.all(np.abs(back - x) <= step / 2 * 1.0001 + 1e-6)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c, q: q.update(bits=3),  # codes above 3 bits
        lambda c, q: q.update(shape=[2, 16]),
        lambda c, q: q.update(scale=q["scale"][:-1]),
        lambda c, q: q.update(scale=[float("nan")] * len(q["scale"])),
        lambda c, q: q.update(offset=["0"] * len(q["offset"])),
        lambda c, q: q.update(offset=[1e300] * len(q["offset"])),
        lambda c, q: q.update(scale=[-1.0] * len(q["scale"])),
        lambda c, q: q.update(axis=7),
        lambda c, q: q.update(method="zfp"),
        lambda c, q: q.update(stored_dtype="float16"),
        lambda c, q: q.pop("bits"),
    ],
)
def test_tampered_array_qinfo_raises_format_error(tamper):
    x = np.random.default_rng(0).normal(size=(1, 16, 32, 48)).astype(np.float32) * 10
    x[:, 0] *= 100
    codes, q = quantize_array(x, "int6", axis=1)
    assert q["granularity"] == "channel"
    tamper(codes, q)
    with pytest.raises(FormatError):
        dequantize_array(codes, q)


def test_array_codes_of_the_wrong_dtype_raise_format_error():
    codes, q = quantize_array(np.ones((4, 4), np.float32), "int8")
    with pytest.raises(FormatError):
        dequantize_array(codes.astype(np.int16), q)
    with pytest.raises(FormatError):
        dequantize_array(codes.tolist(), q)
