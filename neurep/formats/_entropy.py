"""Entropy coding of the compact layout's affine weight codes (format 1.2, codec ``"ans"``).

Affine codes (``code`` in ``[0, L]``, ``L = 2**bits - 1``) are stored raw at ``bits`` each
whatever their distribution; trained weights cluster near zero, so most codes lie near the
code of the value 0. This codec stores, in place of the ``codes`` tensor::

    codes_ans    uint8 (4 W,)  the compressed words of one ANS stream, little-endian uint32
    codes_model  uint16 (A,)   one Laplace decay per affine tensor, in layout order

Each tensor's codes become symbols ``d = code - centre + L`` in ``[0, 2 L]``, ``centre`` the
channel's (or tensor's) code of 0, ``clip(floor(0.5 - offset / scale), 0, L)`` in float64
from the stored ``params``. Their model is a two-sided geometric (a discrete Laplace) built
in integers only, so it is the same on every machine: ``w(0) = 2**30``, ``w(j + 1) =
(w(j) * q) >> 16`` with ``q`` the tensor's ``codes_model`` entry, and the frequency of
``d`` is ``max(w(|d - L|), 1)``. These frequencies go, as float64 (exact), to
``constriction.stream.model.Categorical(..., perfect=False)``, which normalises them to its
24-bit fixed point; the stream is constriction's ``AnsCoder`` (32-bit words), tensors
decoded in layout order. A decoded stream must end exactly: a file that leaves words
unread, or whose codes leave ``[0, L]``, is a :class:`~neurep.FormatError`. Decoding does
one model lookup per weight of the decoder the metadata describes, so its work is bounded
by the decoder the reader already accepted.
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

__all__ = ["ANS_CODEC", "decode_codes", "encode_codes", "has_codec", "recode"]

#: ``weights.quantization["codec"]`` of an entropy-coded file.
ANS_CODEC = {"name": "ans", "configuration": {"model": "laplace"}}
#: Bytes the codec adds besides its stream: its metadata record and two safetensors entries.
CODEC_OVERHEAD = 100
_CODES, _PARAMS = "codes", "params"
_ANS, _MODEL = "codes_ans", "codes_model"
_W0, _Q_ONE = 1 << 30, 1 << 16
#: Decays tried per tensor when encoding (fixed point, / 65536), slow to fast.
_Q_GRID = np.unique(np.round(_Q_ONE * np.exp(-1.0 / np.geomspace(0.25, 200.0, 160))).astype(int))


def has_codec(qinfo: Any) -> bool:
    """True when a version-2 weights qinfo names an entropy codec."""
    return isinstance(qinfo, dict) and "codec" in qinfo


@functools.lru_cache(maxsize=64)
def _half_table(levels: int) -> np.ndarray:
    """``w(j)`` for every grid decay: (len(_Q_GRID), levels) float64, built in integers."""
    return np.stack([_half_weights(int(q), levels) for q in _Q_GRID])


@functools.lru_cache(maxsize=1024)
def _half_weights(q: int, levels: int) -> np.ndarray:
    """``max(w(j), 1)`` for ``j`` in ``[0, L]``: exact integers held as float64."""
    weights = [_W0]
    for _ in range(levels - 1):
        weights.append((weights[-1] * q) >> 16)
    return np.maximum(np.asarray(weights, dtype=np.float64), 1.0)


def _laplace_frequencies(q: int, levels: int) -> np.ndarray:
    """Integer frequencies of ``d`` in ``[0, 2 L]`` (L = levels - 1), as float64."""
    half = _half_weights(q, levels)
    return np.concatenate([half[:0:-1], half])


@functools.lru_cache(maxsize=1024)
def _categorical(q: int, levels: int):
    import constriction

    return constriction.stream.model.Categorical(_laplace_frequencies(q, levels), perfect=False)


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


def _best_decay(symbols: np.ndarray, levels: int) -> int:
    """The grid decay that codes ``symbols`` (in [0, 2 L]) in the fewest bits."""
    counts = np.bincount(np.abs(symbols - (levels - 1)), minlength=levels).astype(np.float64)
    half = _half_table(levels)  # (G, L + 1)
    totals = 2.0 * half.sum(axis=1) - half[:, 0]  # both sides, the centre once
    bits = -(np.log2(half / totals[:, None]) @ counts)  # (G,)
    return int(_Q_GRID[int(np.argmin(bits))])


def encode_codes(
    stored: dict[str, torch.Tensor],
    qinfo: dict,
    expected: dict[str, tuple[str, tuple[int, ...]]],
    *,
    always: bool = False,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Version-2 ``(stored, qinfo)`` with raw codes -> the same entropy-coded, or unchanged
    when there are no affine codes or (unless ``always``) coding would not make them smaller."""
    import constriction

    bits = _bits(qinfo["precision"])
    if bits is None or _CODES not in stored:
        return stored, qinfo
    levels = 1 << bits
    raw = stored[_CODES].numpy()
    params = stored[_PARAMS].numpy()
    streams = []
    for codes_at, n, shape, axis, params_at, packed in _affine_tensors(qinfo, expected):
        length = (n * bits + 7) // 8 if packed else n
        chunk = raw[codes_at : codes_at + length]
        codes = (_unpack(chunk, bits, n) if packed else chunk).astype(np.int64)
        symbols = codes - _centres(params, params_at, shape, axis, levels) + levels - 1
        streams.append((symbols.astype(np.int32), _best_decay(symbols, levels)))
    coder = constriction.stream.stack.AnsCoder()
    for symbols, q in reversed(streams):  # a stack: the first tensor is pushed last
        coder.encode_reverse(symbols, _categorical(q, levels))
    words = np.asarray(coder.get_compressed(), dtype="<u4")
    model = np.asarray([q for _, q in streams], dtype=np.uint16)
    if not always and words.nbytes + model.nbytes + CODEC_OVERHEAD >= raw.nbytes:
        return stored, qinfo
    out = {key: value for key, value in stored.items() if key != _CODES}
    out[_ANS] = torch.from_numpy(words.view(np.uint8).copy())
    out[_MODEL] = torch.from_numpy(model.astype(np.int16).view(np.int16).copy())
    return out, {**qinfo, "codec": ANS_CODEC}


def decode_codes(
    stored: Any, qinfo: Any, expected: dict[str, tuple[str, tuple[int, ...]]], source: str
) -> tuple[Any, Any]:
    """An entropy-coded version-2 ``(stored, qinfo)`` as read from a file -> the raw one.

    Raises FormatError for an unknown codec, malformed tensors, a stream that does not
    decode to exactly the layout's codes, or codes outside the precision's range.
    """

    def fail(problem: str) -> FormatError:
        return FormatError(f"{source}: entropy-coded weights: {problem}")

    codec = qinfo["codec"]
    if codec != ANS_CODEC:
        raise fail(f"unknown codec {codec!r} (this neurep knows {ANS_CODEC['name']!r})")
    plain = {key: value for key, value in qinfo.items() if key != "codec"}
    if not isinstance(stored, dict) or _CODES in stored:
        raise fail("raw 'codes' beside a codec")
    words, model = stored.get(_ANS), stored.get(_MODEL)
    params = stored.get(_PARAMS)
    for name, tensor, dtype in ((_ANS, words, torch.uint8), (_MODEL, model, torch.int16)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype or tensor.dim() != 1:
            raise fail(f"{name!r} must be a 1-D {dtype} tensor")
    if words.numel() % 4 or not isinstance(params, torch.Tensor) or params.dtype != torch.float32:
        raise fail("'codes_ans' must hold whole 32-bit words, and 'params' float32")
    bits = _bits(plain.get("precision")) if isinstance(plain.get("layout"), str) else None
    if bits is None or len(plain["layout"]) != len(expected):
        raise fail("the codec needs an integer precision and a layout letter per tensor")
    tensors = _affine_tensors(plain, expected)
    if model.numel() != len(tensors):
        raise fail(f"'codes_model' has {model.numel()} entries, the layout {len(tensors)}")
    needed = sum(2 * (1 if axis is None else shape[axis]) for _, _, shape, axis, _, _ in tensors)
    if params.numel() < needed:
        raise fail(f"'params' has {params.numel()} values, the layout needs {needed}")
    levels = 1 << bits
    decays = model.numpy().view(np.uint16)
    import constriction

    try:
        coder = constriction.stream.stack.AnsCoder(words.numpy().view("<u4").astype(np.uint32))
        pieces = []
        for (_, n, shape, axis, params_at, packed), q in zip(tensors, decays, strict=True):
            symbols = np.asarray(coder.decode(_categorical(int(q), levels), n), dtype=np.int64)
            codes = symbols - levels + 1 + _centres(params.numpy(), params_at, shape, axis, levels)
            if codes.size and (codes.min() < 0 or codes.max() >= levels):
                raise fail("a decoded code lies outside the precision's range")
            pieces.append(_pack(codes.astype(np.uint8), bits) if packed else codes.astype(np.uint8))
        if not coder.is_empty():
            raise fail("the stream holds more than the layout's codes")
    except FormatError:
        raise
    except Exception as error:  # constriction rejects a malformed stream in its own words
        raise fail(f"the stream does not decode ({error})") from None
    out = {key: value for key, value in stored.items() if key not in (_ANS, _MODEL)}
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
    out[_CODES] = torch.from_numpy(joined.astype(np.uint8))
    return out, plain


def recode(
    stored: Any,
    qinfo: dict,
    expected: dict[str, tuple[str, tuple[int, ...]]],
    codec: str,
    source: str,
) -> tuple[Any, dict]:
    """A version-2 ``(stored, qinfo)`` under ``codec`` (``"ans"`` or ``"raw"``), losslessly;
    unchanged when it already is."""
    if has_codec(qinfo) == (codec == "ans"):
        return stored, qinfo
    if has_codec(qinfo):
        return decode_codes(stored, qinfo, expected, source)
    return encode_codes(stored, qinfo, expected)
