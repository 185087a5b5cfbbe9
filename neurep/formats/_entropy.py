"""Entropy coding of the compact layout's affine weight codes (codec ``"ans"``).

Affine codes (``code`` in ``[0, L]``, ``L = 2**bits - 1``) are stored raw at ``bits`` each
whatever their distribution; trained weights cluster near zero, so most codes lie near the
code of the value 0. This codec stores, in place of the ``codes`` tensor, one ANS stream of
symbols ``s = r + L`` in ``[0, 2 L]``, where ``r`` is a code's offset from its channel's (or
tensor's) code of 0, ``centre = clip(floor(0.5 - offset / scale), 0, L)`` in float64 from the
stored ``params``, less a prediction (format 1.3; see below).

Each tensor's symbols have one model, built in integers only, so it is the same on every
machine: over magnitudes ``j = |s - L|``, ``w(0) = 2**30``, ``w(j + 1) = (w(j) * q_j) >> 16``
and ``q_{j+1} = (q_j * (2**16 - u)) >> 16`` from ``q_0 = q``; the frequency of ``s`` is
``max(w(|s - L|), 1)``. ``u = 0`` is a discrete Laplace; ``u > 0`` bends the log-frequencies
down quadratically (towards a Gaussian), which fits trained weights better. Frequencies go,
as float64 (exact), to ``constriction.stream.model.Categorical(..., perfect=False)``, which
normalises them to its 24-bit fixed point; the stream is constriction's ``AnsCoder`` (32-bit
words), tensors decoded in layout order, each in C order.

Two configurations (docs/FORMAT.md §13, §14):

- ``{"model": "laplace"}`` (format 1.2, read only): ``codes_ans`` (uint8, 4 W), and
  ``codes_model`` int16 (A,), one ``q`` per affine tensor (``u = 0``, no prediction);
  ``params`` float32.
- ``{"model": "log_quadratic", "prediction": "kernel_sum", "params": P}`` (format 1.3,
  written unless 1.2's is smaller):
  ``codes_model`` int16 (3 A,), per affine tensor ``(q, u, predicted)``; ``codes_gains``
  int16 (G,); ``params`` stored as ``P`` (``"float16"`` when every value is exactly a
  float16 number, else ``"float32"``). A predicted tensor of shape (O, I, *k) is read as
  (O * I, K) rows of K = prod(k) kernel taps, 2 <= K <= 64; tap ``t >= 1`` of a row is
  predicted as ``p = (g_t * S + 2048) >> 12`` (S the sum of the row's earlier offsets,
  ``g_t`` its gain, K - 1 gains per predicted tensor in ``codes_gains``), clipped to the
  offsets the tap's code can take, and ``r`` is the offset less ``p``. Trained transposed
  convolutions share a part of each kernel's taps, which this takes out.

A decoded stream must end exactly: a file that leaves words unread, or whose codes leave
``[0, L]``, is a :class:`~neurep.FormatError`. Decoding does one model lookup per weight of
the decoder the metadata describes (and at most 63 vector steps per predicted tensor), so its
work is bounded by the decoder the reader already accepted.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from neurep.errors import FormatError
from neurep.formats._compact import _bits, layout_plan
from neurep.formats.quantize import _pack, _unpack

__all__ = [
    "ANS_CODEC",
    "ANS_CODEC_FLOAT32",
    "LAPLACE_CODEC",
    "decode_codes",
    "encode_codes",
    "has_codec",
    "recode",
]

#: The codec of format 1.2 files (still read).
LAPLACE_CODEC = {"name": "ans", "configuration": {"model": "laplace"}}
_V13 = {"model": "log_quadratic", "prediction": "kernel_sum"}
#: The codec this neurep writes (format 1.3), with the ``params`` dtype it stores.
ANS_CODEC = {"name": "ans", "configuration": {**_V13, "params": "float16"}}
ANS_CODEC_FLOAT32 = {"name": "ans", "configuration": {**_V13, "params": "float32"}}
#: Bytes a codec adds besides its stream: its metadata record and the safetensors entries of
#: its tensors (format 1.3's three, 1.2's two, in place of one ``codes``): measured 191 and 92.
CODEC_OVERHEAD, LAPLACE_OVERHEAD = 200, 100
_CODES, _PARAMS = "codes", "params"
_ANS, _MODEL, _GAINS = "codes_ans", "codes_model", "codes_gains"
_W0, _ONE = 1 << 30, 1 << 16
#: Kernel taps a predicted tensor may have (each tap after the first is one vector step).
MAX_PREDICTED_TAPS = 64
#: Prediction gains are fixed point with this many fractional bits.
_GAIN_BITS = 12
#: Decays tried per tensor when encoding (fixed point, / 65536), slow to fast.
_Q_GRID = np.unique(np.round(_ONE * np.exp(-1.0 / np.geomspace(0.25, 200.0, 160))).astype(int))
#: Curvatures tried: 0 (Laplace) and those of Gaussians of 1 to 400 codes' deviation.
_U_GRID = np.unique(
    np.concatenate([[0], np.round(_ONE * -np.expm1(-1.0 / np.geomspace(1.0, 400.0, 40) ** 2))])
).astype(int)


def has_codec(qinfo: Any) -> bool:
    """True when a version-2 weights qinfo names an entropy codec."""
    return isinstance(qinfo, dict) and "codec" in qinfo


def _magnitude_weights(q: np.ndarray, u: np.ndarray, levels: int) -> np.ndarray:
    """``max(w(j), 1)`` for ``j`` in ``[0, L]`` of every model ``(q[m], u[m])``:
    (M, levels) float64 holding exact integers (module docstring)."""
    weights = np.empty((q.size, levels), dtype=np.int64)
    weights[:, 0] = _W0
    decay, bend = q.astype(np.int64), _ONE - u.astype(np.int64)
    for j in range(1, levels):
        weights[:, j] = (weights[:, j - 1] * decay) >> 16
        decay = (decay * bend) >> 16
    return np.maximum(weights, 1).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _grid_costs(levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every grid model's ``(q, u)`` and bits per magnitude: (G,), (G,), (G, levels)."""
    q, u = (grid.ravel() for grid in np.meshgrid(_Q_GRID, _U_GRID, indexing="ij"))
    half = _magnitude_weights(q, u, levels)
    totals = 2.0 * half.sum(axis=1) - half[:, 0]  # both sides, the centre once
    return q, u, -np.log2(half / totals[:, None])


@functools.lru_cache(maxsize=1024)
def _categorical(q: int, u: int, levels: int):
    import constriction

    half = _magnitude_weights(np.asarray([q]), np.asarray([u]), levels)[0]
    frequencies = np.concatenate([half[:0:-1], half])  # s in [0, 2 L]
    return constriction.stream.model.Categorical(frequencies, perfect=False)


def _affine_tensors(qinfo: dict, expected: dict[str, tuple[str, tuple[int, ...]]]) -> list:
    """Per affine tensor, in layout order: (codes start, count, shape, axis or None,
    params start, packed), from the compact layout's plan (FormatError for a bad layout)."""
    spans, _, _, v1, _ = layout_plan(qinfo["precision"], qinfo["layout"], tuple(expected.items()))
    tensors = []
    for key, start, _, _, name in spans:
        if key == _CODES:
            entry = v1["tensors"][name]
            shape = tuple(entry["shape"])
            n = math.prod(shape)
            tensors.append((start, n, shape, entry.get("axis"), entry["params"], entry["packed"]))
    return tensors


def _centres(params: np.ndarray, at: int, shape: tuple[int, ...], axis, levels: int):
    """Each element's code of the value 0 (C-order, n elements)."""
    channels = 1 if axis is None else shape[axis]
    scale = params[at : at + channels].astype(np.float64)
    offset = params[at + channels : at + 2 * channels].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = np.floor(0.5 - offset / scale)
    centre = np.clip(np.nan_to_num(centre, nan=0.0, posinf=0.0, neginf=0.0), 0, levels - 1)
    centre = centre.astype(np.int64)
    n = math.prod(shape)
    if axis is None:
        return np.full(n, centre[0], dtype=np.int64)
    inner = math.prod(shape[axis + 1 :])
    return centre[(np.arange(n) // inner) % channels]


def _taps(shape: tuple[int, ...]) -> int:
    """Kernel taps per row of a tensor that prediction may use (0: it may not)."""
    taps = math.prod(shape[2:]) if len(shape) >= 3 else 0
    return taps if 2 <= taps <= MAX_PREDICTED_TAPS else 0


def _predictions(offsets: np.ndarray, gains: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Yield each tap's prediction, tap by tap: offsets, low, high (rows, K) int64, gains
    (K - 1,). The caller fills ``offsets[:, t]`` before asking for tap ``t + 1``."""
    total = np.zeros(offsets.shape[0], dtype=np.int64)
    yield np.zeros_like(total)
    for t in range(1, offsets.shape[1]):
        total += offsets[:, t - 1]
        guess = (int(gains[t - 1]) * total + (1 << (_GAIN_BITS - 1))) >> _GAIN_BITS
        yield np.clip(guess, low[:, t], high[:, t])


def _residuals(offsets: np.ndarray, gains: np.ndarray, low, high) -> np.ndarray:
    """Offsets (rows, K) less their predictions (the encoder's side)."""
    out = np.empty_like(offsets)
    for t, guess in enumerate(_predictions(offsets, gains, low, high)):
        out[:, t] = offsets[:, t] - guess
    return out


def _fitted_gains(offsets: np.ndarray) -> np.ndarray:
    """Least-squares gains of each tap on the sum of the earlier ones: (K - 1,) int64."""
    values = offsets.astype(np.float64)
    totals = np.cumsum(values, axis=1)[:, :-1]  # (rows, K - 1): the sum before tap t
    power = np.einsum("rt,rt->t", totals, totals)
    gains = np.einsum("rt,rt->t", totals, values[:, 1:]) / np.maximum(power, 1e-12)
    return np.clip(np.round(gains * (1 << _GAIN_BITS)), -(2**15), 2**15 - 1).astype(np.int64)


def _best_model(residuals: np.ndarray, levels: int, bent: bool = True) -> tuple[int, int, float]:
    """The grid model that codes ``residuals`` (in [-L, L]) in the fewest bits: (q, u, bits);
    ``bent=False``: Laplace models only (u = 0)."""
    counts = np.bincount(np.abs(residuals).ravel(), minlength=levels).astype(np.float64)
    q, u, costs = _grid_costs(levels)
    bits = costs @ counts
    if not bent:
        bits = np.where(u == 0, bits, np.inf)
    best = int(np.argmin(bits))
    return int(q[best]), int(u[best]), float(bits[best])


def _code_tensor(offsets: np.ndarray, centres: np.ndarray, shape, levels: int, laplace: bool):
    """One tensor's offsets (n,) -> (symbols (n,) int32, (q, u, predicted), gains)."""
    q, u, bits = _best_model(offsets, levels, bent=not laplace)
    plain = (offsets + levels - 1, (q, u, 0), np.zeros(0, dtype=np.int64))
    taps = 0 if laplace else _taps(shape)
    if not taps:
        return plain
    rows = offsets.reshape(-1, taps)
    low = -centres.reshape(-1, taps)
    gains = _fitted_gains(rows)
    residuals = _residuals(rows, gains, low, low + levels - 1).ravel()
    pq, pu, predicted_bits = _best_model(residuals, levels)
    if predicted_bits + 16 * gains.size >= bits:
        return plain
    return residuals + levels - 1, (pq, pu, 1), gains


def encode_codes(
    stored: dict[str, torch.Tensor],
    qinfo: dict,
    expected: dict[str, tuple[str, tuple[int, ...]]],
    *,
    always: bool = False,
    model: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Version-2 ``(stored, qinfo)`` with raw codes -> the same entropy-coded, under format
    1.3's codec (``model="log_quadratic"``), 1.2's (``"laplace"``, which readers of 1.2
    decode) or, by default, whichever is smaller; unchanged when there are no affine codes or
    (unless ``always``) coding would not make the member smaller."""
    if model not in (None, "laplace", "log_quadratic"):
        raise ValueError(f"model must be 'laplace', 'log_quadratic' or None, not {model!r}")
    bits = _bits(qinfo["precision"])
    if bits is None or _CODES not in stored:
        return stored, qinfo
    raw_bytes = stored[_CODES].numpy().nbytes + stored[_PARAMS].numpy().nbytes
    options = [
        _coded(stored, qinfo, expected, bits, laplace=name == "laplace")
        for name in ("laplace", "log_quadratic")
        if model in (None, name)
    ]
    out, coded_qinfo, size = min(options, key=lambda option: option[2])
    if not always and size >= raw_bytes:
        return stored, qinfo
    return out, coded_qinfo


def _coded(stored: dict, qinfo: dict, expected: dict, bits: int, *, laplace: bool):
    """(coded tensors, qinfo, estimated bytes) under 1.2's codec or 1.3's."""
    import constriction

    levels = 1 << bits
    raw = stored[_CODES].numpy()
    params = stored[_PARAMS].numpy()
    streams, models, gains = [], [], []
    for codes_at, n, shape, axis, params_at, packed in _affine_tensors(qinfo, expected):
        length = (n * bits + 7) // 8 if packed else n
        chunk = raw[codes_at : codes_at + length]
        codes = (_unpack(chunk, bits, n) if packed else chunk).astype(np.int64)
        centres = _centres(params, params_at, shape, axis, levels)
        symbols, model, tensor_gains = _code_tensor(
            codes - centres, centres, shape, levels, laplace
        )
        streams.append((symbols.astype(np.int32), model))
        models.extend(model[:1] if laplace else model)
        gains.append(tensor_gains)
    coder = constriction.stream.stack.AnsCoder()
    for symbols, (q, u, _) in reversed(streams):  # a stack: the first tensor is pushed last
        coder.encode_reverse(symbols, _categorical(q, u, levels))
    words = np.asarray(coder.get_compressed(), dtype="<u4")
    model = np.asarray(models, dtype=np.uint16).view(np.int16)
    out = {key: value for key, value in stored.items() if key not in (_CODES, _PARAMS)}
    out[_ANS] = torch.from_numpy(words.view(np.uint8).copy())
    out[_MODEL] = torch.from_numpy(model.copy())
    if laplace:
        out[_PARAMS] = stored[_PARAMS]
        size = words.nbytes + model.nbytes + params.nbytes + LAPLACE_OVERHEAD
        return out, {**qinfo, "codec": LAPLACE_CODEC}, size
    half = _exact_in_float16(params)
    coded_params = params.astype(np.float16) if half else params
    gain = np.concatenate(gains).astype(np.int16)
    out[_PARAMS] = torch.from_numpy(np.ascontiguousarray(coded_params))
    out[_GAINS] = torch.from_numpy(gain)
    size = words.nbytes + model.nbytes + gain.nbytes + coded_params.nbytes + CODEC_OVERHEAD
    return out, {**qinfo, "codec": ANS_CODEC if half else ANS_CODEC_FLOAT32}, size


def _exact_in_float16(values: np.ndarray) -> bool:
    """Whether every (float32) value is finite and exactly a float16 number."""
    with np.errstate(over="ignore"):
        half = values.astype(np.float16)
    return bool(np.isfinite(values).all()) and np.array_equal(half.astype(np.float32), values)


def decode_codes(
    stored: Any, qinfo: Any, expected: dict[str, tuple[str, tuple[int, ...]]], source: str
) -> tuple[Any, Any]:
    """An entropy-coded version-2 ``(stored, qinfo)`` as read from a file -> the raw one.

    Raises FormatError for an unknown codec, malformed tensors, a stream that does not
    decode to exactly the layout's codes, or codes outside the precision's range.
    """

    def fail(problem: str) -> FormatError:
        return FormatError(f"{source}: entropy-coded weights: {problem}")

    plain = {key: value for key, value in qinfo.items() if key != "codec"}
    words, entries, gains, params = _checked_parts(stored, qinfo["codec"], plain, expected, fail)
    tensors = _affine_tensors(plain, expected)
    bits = _bits(plain["precision"])
    levels = 1 << bits
    values, gains_at = params.numpy(), 0
    import constriction

    try:
        coder = constriction.stream.stack.AnsCoder(words.numpy().view("<u4").astype(np.uint32))
        pieces = []
        for (_, n, shape, axis, params_at, packed), (q, u, predicted) in zip(
            tensors, entries, strict=True
        ):
            symbols = np.asarray(coder.decode(_categorical(q, u, levels), n), dtype=np.int64)
            centres = _centres(values, params_at, shape, axis, levels)
            offsets = symbols - levels + 1
            if predicted:
                k = _taps(shape)
                tensor_gains, gains_at = gains[gains_at : gains_at + k - 1], gains_at + k - 1
                rows, low = offsets.reshape(-1, k), -centres.reshape(-1, k)
                for t, guess in enumerate(_predictions(rows, tensor_gains, low, low + levels - 1)):
                    rows[:, t] += guess
            codes = offsets + centres
            if codes.size and (codes.min() < 0 or codes.max() >= levels):
                raise fail("a decoded code lies outside the precision's range")
            codes = codes.astype(np.uint8)
            pieces.append(_pack(codes, bits) if packed else codes)
        if not coder.is_empty():
            raise fail("the stream holds more than the layout's codes")
    except FormatError:
        raise
    except Exception as error:  # constriction rejects a malformed stream in its own words
        raise fail(f"the stream does not decode ({error})") from None
    out = {key: value for key, value in stored.items() if key not in (_ANS, _MODEL, _GAINS)}
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
    out[_CODES] = torch.from_numpy(joined.astype(np.uint8))
    out[_PARAMS] = params
    return out, plain


def _checked_parts(stored: Any, codec: Any, plain: dict, expected: dict, fail) -> tuple:
    """Validate a coded member against its codec and layout: the stream's words (uint8
    tensor), models (A, 3) ``(q, u, predicted)`` int (format 1.2's as ``(q, 0, 0)``), gains
    (G,) int64 and params (float32 tensor). Raises what ``fail`` makes of a problem."""
    known = (LAPLACE_CODEC, ANS_CODEC, ANS_CODEC_FLOAT32)
    if codec not in known:
        raise fail(f"unknown codec {codec!r} (this neurep knows {list(known)})")
    laplace = codec == LAPLACE_CODEC
    if not isinstance(stored, dict) or _CODES in stored:
        raise fail("raw 'codes' beside a codec")
    if laplace and _GAINS in stored:
        raise fail(f"{_GAINS!r} under the {codec['configuration']} model")
    words, model, params = stored.get(_ANS), stored.get(_MODEL), stored.get(_PARAMS)
    gains = torch.zeros(0, dtype=torch.int16) if laplace else stored.get(_GAINS)
    params_dtype = torch.float16 if codec == ANS_CODEC else torch.float32
    checks = (
        (_ANS, words, torch.uint8),
        (_MODEL, model, torch.int16),
        (_GAINS, gains, torch.int16),
        (_PARAMS, params, params_dtype),
    )
    for name, tensor, dtype in checks:
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype or tensor.dim() != 1:
            raise fail(f"{name!r} must be a 1-D {dtype} tensor")
    if words.numel() % 4:
        raise fail("'codes_ans' must hold whole 32-bit words")
    bits = _bits(plain.get("precision")) if isinstance(plain.get("layout"), str) else None
    if bits is None or len(plain["layout"]) != len(expected):
        raise fail("the codec needs an integer precision and a layout letter per tensor")
    tensors = _affine_tensors(plain, expected)
    per_tensor = 1 if laplace else 3
    if model.numel() != per_tensor * len(tensors):
        needed = per_tensor * len(tensors)
        raise fail(f"'codes_model' has {model.numel()} entries, the layout needs {needed}")
    needed = sum(2 * (1 if axis is None else shape[axis]) for _, _, shape, axis, _, _ in tensors)
    if params.numel() < needed:
        raise fail(f"'params' has {params.numel()} values, the layout needs {needed}")
    params = params.to(torch.float32)
    if not bool(torch.isfinite(params).all()):
        raise fail("'params' are not finite")
    entries = model.numpy().view(np.uint16).astype(np.int64).reshape(len(tensors), per_tensor)
    if laplace:
        entries = np.concatenate([entries, np.zeros((len(tensors), 2), np.int64)], axis=1)
    predicted = entries[:, 2]
    taps = np.asarray([_taps(shape) for _, _, shape, _, _, _ in tensors], dtype=np.int64)
    if predicted.size and (predicted.max() > 1 or np.any(predicted.astype(bool) & (taps == 0))):
        raise fail("a tensor is marked predicted that prediction cannot apply to")
    needed = int(np.sum(predicted * np.maximum(taps - 1, 0)))
    if gains.numel() != needed:
        raise fail(f"'codes_gains' has {gains.numel()} entries, the models need {needed}")
    return words, entries.tolist(), gains.numpy().astype(np.int64), params


#: What ``NeuralDatum.save(weights_codec=...)`` accepts: ``"ans"`` (format 1.3's codec, or
#: the file's own when it is coded already), ``"ans-1.2"`` (format 1.2's, which readers of
#: 1.2 decode) and ``"raw"`` (plain safetensors codes).
WEIGHT_CODECS = ("ans", "ans-1.2", "raw")


def recode(
    stored: Any,
    qinfo: dict,
    expected: dict[str, tuple[str, tuple[int, ...]]],
    codec: str,
    source: str,
) -> tuple[Any, dict]:
    """A version-2 ``(stored, qinfo)`` under ``codec`` (one of :data:`WEIGHT_CODECS`),
    losslessly; unchanged when it already is."""
    current = qinfo.get("codec")
    if (codec == "raw" and current is None) or (codec == "ans" and current is not None):
        return stored, qinfo
    if codec == "ans-1.2" and current == LAPLACE_CODEC:
        return stored, qinfo
    if current is not None:
        stored, qinfo = decode_codes(stored, qinfo, expected, source)
    if codec == "raw":
        return stored, qinfo
    return encode_codes(stored, qinfo, expected, model="laplace" if codec == "ans-1.2" else None)
