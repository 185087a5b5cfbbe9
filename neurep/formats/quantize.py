"""Quantisation of decoder weights (safetensors) and embeddings (zarr) for the ``.nrep`` file.

::

    stored, qinfo = quantize_tensors(state_dict, "int6")       # qinfo version 1
    state_dict = dequantize_tensors(stored, qinfo, expected)  # float32, bit-identical every run

    codes, qinfo = quantize_array(embedding, "int6", axis=1)
    embedding = dequantize_array(codes, qinfo)                # float32

The quantisers return ``qinfo`` version 1, format 1.0's per-tensor record (docs/FORMAT.md §8);
the writer turns it into format 1.1's compact version 2 (a letter per tensor, flat tensors)
with :mod:`neurep.formats._compact` (FORMAT.md §12). The dequantisers read both (version-2
weights need ``expected``, the decoder's tensors); ``qinfo`` may come from a hostile file, so
they validate it (:mod:`neurep.formats._qinfo`) and raise only :class:`neurep.FormatError`.

Precisions: ``float32`` / ``float16`` / ``bfloat16`` are a plain cast; ``int8`` .. ``int4``
asymmetric affine codes ``x ≈ offset + scale * code`` (``code`` in ``[0, 2**bits - 1]``), with
one ``(scale, offset)`` per tensor or per channel along axis 0 or 1 (output channels are axis 0
of a ``Conv`` weight but axis 1 of a ``ConvTranspose`` weight, so both are tried).

Decisions (see also docs of each function)
------------------------------------------
* **Rounding of the parameters.** ``offset`` is rounded *down* and ``scale`` *up* to float32, so
  ``[offset, offset + scale * levels]`` always covers the data and every element's error is at
  most ``scale / 2`` (plus one float32 rounding of the result).
* **Granularity ("auto").** neurep keeps, per tensor, the candidate (per-tensor, per-channel
  along axis 0, along axis 1) with the smallest squared error once the bytes of the extra
  per-channel parameters are charged for. Under the high-rate model of a
  uniform quantiser (MSE ∝ 2**(-2 R)), ``extra`` bytes spread over ``n`` elements would have
  bought ``8 * extra / n`` more bits per element, i.e. a factor ``2**(16 * extra / n)`` less
  error. Per-channel is chosen when ``sse_channel * 2**(16 * extra / n) < sse_tensor``: it is
  never chosen when its error is not smaller, and on small tensors (many channels, few
  elements each) the parameter bytes rarely pay.
* **Bit packing.** Codes of fewer than 8 bits are bit-packed (LSB first,
  ``ceil(n * bits / 8)`` bytes in a 1-D uint8 tensor). The zip member is stored, not deflated,
  so without packing int4..int7 would cost exactly as many bytes as int8; packing saves
  ``(8 - bits) / 8`` of the code bytes (50 % at int4). The price is that a plain safetensors
  reader sees a flat byte tensor instead of the original shape for those precisions; int8
  codes keep the original shape in version 1 (version 2 flattens all tensors at int precisions).
* **Small tensors and vectors.** Under an integer precision, tensors with fewer than
  :data:`MIN_QUANT_NUMEL` (64) elements and all tensors of < 2 dims (biases, norm gains) are
  kept as float16 (float32 when a value does not fit float16).
  For tiny tensors the parameters plus the header entry cost more than the codes save;
  vectors are O(C) next to O(C^2 k^2) weights (on the 140k-parameter Kodak decoder, int4
  biases would save ~0.5 kB of 74 kB) and are the parameters quantisation hurts most.
* **Parameters on float16 values.** Each tensor's scales and offsets are moved onto float16
  numbers (offset down, scale up, so they still cover the data) unless float16 would hold
  them badly (magnitudes beyond 60000, or nonzero scales below 2**-14). They are still
  stored as float32 in the raw layout; the entropy codec of format 1.3 stores them in half
  the bytes. The cost is at most about 0.1% more step (kodim01: 880 bytes saved).
* **One parameter tensor.** All scales and offsets live in one float32 tensor (``"__qparams__"``,
  version 2's ``params``), each affine tensor owning a slice: every extra safetensors header
  entry costs ~90 bytes, which matters at 0.1 bpp (a 768x512 image then has ~4.9 kB in total).
* **Integer tensors** (e.g. counters in a state dict) are stored unchanged (``method: "raw"``)
  and come back with their own dtype; every floating tensor comes back as float32.
* **No lossless stage in the safetensors member.** Bit-packed codes leave byte-oriented coders
  little to find: the few percent zstd saves at int8/int6 do not pay for losing
  plain-safetensors readability (int4 is the case to revisit). Embedding codes are *not*
  packed, so the container's zarr zstd codec does shrink them. Measurements:
  benchmarks/RESULTS.md ("Storage").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from neurep.formats._compact import COMPACT_VERSION, expand_array, expand_tensors
from neurep.formats._qinfo import (
    DTYPE_NAMES,
    FLOAT_DTYPES,
    PARAMS_TENSOR,
    PRECISIONS,
    QINFO_VERSION,
    expected_array,
    expected_stored,
    require,
)

__all__ = [
    "MIN_QUANT_NUMEL",
    "PARAMS_TENSOR",
    "PRECISIONS",
    "QINFO_VERSION",
    "affine_granularity",
    "affine_grid",
    "coarser_scales",
    "dequantize_array",
    "dequantize_tensors",
    "is_affine",
    "precision_bits",
    "quantize_array",
    "quantize_tensors",
]

#: Floating tensors with fewer elements stay float16 under integer precisions.
MIN_QUANT_NUMEL = 64
_FP16_MAX = float(np.finfo(np.float16).max)


# ---------------------------------------------------------------------------------------------
# numpy core: affine codes over rows
# ---------------------------------------------------------------------------------------------


def precision_bits(precision: str) -> int | None:
    """Bits of an integer precision (``"int6"`` -> 6); ``None`` for float precisions."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return int(precision[3:]) if precision.startswith("int") else None


def _affine_params(rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row float32 ``scale`` and ``offset`` that cover each row.

    rows: (C, M) float32 with M >= 1.  Returns scale (C,) float32 >= 0, offset (C,) float32 with
    ``offset <= min(row)`` and ``offset + scale * levels >= max(row)`` exactly.
    """
    levels = (1 << bits) - 1
    lo = rows.min(axis=1).astype(np.float64)  # (C,) exact: float32 values
    hi = rows.max(axis=1).astype(np.float64)
    offset = lo.astype(np.float32)  # exact, already <= lo
    scale = ((hi - lo) / levels).astype(np.float32)  # (C,) float32, round to nearest
    for _ in range(4):  # round up until the range is covered (one step almost always enough)
        short = offset.astype(np.float64) + scale.astype(np.float64) * levels < hi
        if not short.any():
            break
        scale[short] = np.nextafter(scale[short], np.float32(np.inf))
    return scale, offset


#: float16 holds a row's parameters well when its values stay below this in magnitude and
#: its nonzero scales are normal float16 numbers (relative precision 2**-11).
_FP16_PARAMS_MAX, _FP16_MIN_NORMAL = 60000.0, 2.0**-14


def _float16_params(
    rows: np.ndarray, scale: np.ndarray, offset: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of :func:`_affine_params` moved onto float16 values that still cover
    every row (offset rounded down, scale up), returned as float32; unchanged when float16
    cannot hold them well (see ``_FP16_PARAMS_MAX``). Exact float16 parameters let the
    entropy codec store them in half the bytes (:mod:`neurep.formats._entropy`)."""
    lo = rows.min(axis=1).astype(np.float64)
    hi = rows.max(axis=1).astype(np.float64)
    normal = (scale == 0) | (scale >= _FP16_MIN_NORMAL)
    largest = max(np.abs(lo).max(), np.abs(hi).max())
    if not (normal.all() and largest <= _FP16_PARAMS_MAX):
        return scale, offset
    levels = (1 << bits) - 1
    offset16 = offset.astype(np.float16)
    high = offset16.astype(np.float64) > lo
    offset16[high] = np.nextafter(offset16[high], np.float16(-np.inf))
    scale16 = ((hi - offset16.astype(np.float64)) / levels).astype(np.float16)
    for _ in range(4):  # round up until the range is covered (one step almost always enough)
        short = offset16.astype(np.float64) + scale16.astype(np.float64) * levels < hi
        if not short.any():
            break
        scale16[short] = np.nextafter(scale16[short], np.float16(np.inf))
    return scale16.astype(np.float32), offset16.astype(np.float32)


def _is_float16(values: np.ndarray) -> bool:
    """Whether every float32 value is exactly a float16 number."""
    with np.errstate(over="ignore"):
        return bool(np.array_equal(values.astype(np.float16).astype(np.float32), values))


def _affine_codes(rows: np.ndarray, scale: np.ndarray, offset: np.ndarray, bits: int) -> np.ndarray:
    """rows (C, M) float32, scale/offset (C,) float32 -> codes (C, M) uint8 (nearest, ties even)."""
    levels = (1 << bits) - 1
    s = scale.astype(np.float64)[:, None]  # (C, 1)
    safe = np.where(s > 0, s, 1.0)
    q = np.rint((rows.astype(np.float64) - offset.astype(np.float64)[:, None]) / safe)
    return np.clip(q, 0, levels).astype(np.uint8)


def _affine_values(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """codes (C, M) uint8, scale/offset (C,) float32 -> values (C, M) float32 (float64 maths)."""
    s = scale.astype(np.float64)[:, None]
    o = offset.astype(np.float64)[:, None]
    return (o + s * codes.astype(np.float64)).astype(np.float32)


def _affine(
    rows: np.ndarray, bits: int, half: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """rows (C, M) float32 -> codes (C, M) uint8, scale (C,), offset (C,), squared error.
    ``half``: parameters on float16 values where float16 holds them well."""
    scale, offset = _affine_params(rows, bits)
    if half:
        scale, offset = _float16_params(rows, scale, offset, bits)
    codes = _affine_codes(rows, scale, offset, bits)
    err = _affine_values(codes, scale, offset).astype(np.float64) - rows.astype(np.float64)
    return codes, scale, offset, float(np.dot(err.ravel(), err.ravel()))


def _quantize_rows(
    x: np.ndarray, bits: int, axes: tuple[int, ...], extra_per_channel: float, half: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, int]:
    """x (...) float32 -> codes (same shape) uint8, scale (C,), offset (C,), granularity, axis.

    Tries per-tensor (C = 1) and per-channel along each of ``axes`` (C = ``x.shape[axis]``)
    and keeps the smallest error once each candidate's extra parameter bytes are charged for
    (the "auto" rule of the module docstring). Axes of length 1 (and 0-d/1-d arrays) are
    left to per-tensor.
    """
    codes, scale, offset, sse = _affine(x.reshape(1, -1), bits, half)  # (1, n)
    best = (codes.reshape(x.shape), scale, offset, "tensor", 0)
    if x.ndim < 2:
        return best
    best_cost = sse
    for axis in axes:
        if axis >= x.ndim or x.shape[axis] < 2:
            continue
        moved = np.moveaxis(x, axis, 0)  # (C, ...)
        rows = moved.reshape(moved.shape[0], -1)  # (C, M)
        c_codes, c_scale, c_offset, c_sse = _affine(rows, bits, half)
        extra = round(extra_per_channel * (rows.shape[0] - 1))
        # The "auto" rule (module docstring): ``extra`` bytes would have bought 8 * extra / n more
        # bits per element elsewhere, i.e. 2 ** (16 * extra / n) times less squared error.
        cost = c_sse * 2.0 ** (16.0 * extra / x.size)
        if cost < best_cost:
            c_codes = np.ascontiguousarray(np.moveaxis(c_codes.reshape(moved.shape), 0, axis))
            best, best_cost = (c_codes, c_scale, c_offset, "channel", axis), cost
    return best


def is_affine(tensor: torch.Tensor) -> bool:
    """Whether an integer precision stores ``tensor`` as affine codes (else a float cast)."""
    return tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= MIN_QUANT_NUMEL


def affine_granularity(x: np.ndarray, bits: int) -> tuple[str, int]:
    """The ``(granularity, axis)`` :func:`quantize_tensors` picks for ``x`` at ``bits``:
    ``("tensor", 0)`` or ``("channel", axis)`` (the "auto" rule)."""
    _, _, _, granularity, axis = _quantize_rows(np.asarray(x, np.float32), bits, (0, 1), 8, True)
    return granularity, axis


def affine_grid(x: np.ndarray, bits: int) -> tuple[str, int, np.ndarray, np.ndarray]:
    """The min-max grid :func:`quantize_tensors` stores ``x`` on at ``bits``:
    ``(granularity, axis, scale (C,), offset (C,))``, before any step scale (see
    :func:`coarser_scales`)."""
    _, scale, offset, granularity, axis = _quantize_rows(
        np.asarray(x, np.float32), bits, (0, 1), 8, True
    )
    return granularity, axis, scale, offset


def coarser_scales(scale: np.ndarray, offset: np.ndarray, factor) -> np.ndarray:
    """The steps (C,) float32 of a grid's ``scale`` at ``factor`` (a float or (C,)) times
    the step: float16 parameters stay float16 (rounded to nearest, never below ``scale``)."""
    factor = np.asarray(factor, dtype=np.float64)
    if factor.ndim and factor.shape != scale.shape:
        raise ValueError(f"{factor.size} step scales for {scale.size} quantisation channels")
    if not bool(np.all(factor >= 1.0)) or not bool(np.all(np.isfinite(factor))):
        raise ValueError(f"a step scale must be finite and at least 1, not {factor!r}")
    coarse = (scale.astype(np.float64) * factor).astype(np.float32)
    if _is_float16(scale) and _is_float16(offset):
        coarse = np.maximum(coarse.astype(np.float16).astype(np.float32), scale)
    return coarse


def _coarser(
    x: np.ndarray, granularity: str, axis: int, scale, offset, bits: int, factor
) -> tuple[np.ndarray, np.ndarray]:
    """Codes (x's shape) and scales (C,) at ``factor`` times the step, same offsets
    (:func:`coarser_scales`)."""
    scale = coarser_scales(scale, offset, factor)
    if granularity == "tensor":
        return _affine_codes(x.reshape(1, -1), scale, offset, bits).reshape(x.shape), scale
    moved = np.moveaxis(x, axis, 0)
    codes = _affine_codes(moved.reshape(moved.shape[0], -1), scale, offset, bits)
    return np.ascontiguousarray(np.moveaxis(codes.reshape(moved.shape), 0, axis)), scale


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """codes (n,) uint8 < 2**bits -> (ceil(n * bits / 8),) uint8, little-endian bit order."""
    planes = np.unpackbits(codes.reshape(-1, 1), axis=1, bitorder="little")[:, :bits]  # (n, bits)
    return np.packbits(planes.reshape(-1), bitorder="little")


def _unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """(ceil(n * bits / 8),) uint8 -> codes (n,) uint8."""
    planes = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    return np.packbits(planes, axis=1, bitorder="little").reshape(n)


# ---------------------------------------------------------------------------------------------
# tensors (decoder weights -> safetensors)
# ---------------------------------------------------------------------------------------------


def quantize_tensors(
    tensors: dict[str, torch.Tensor],
    precision: str,
    step_scales: dict[str, float | np.ndarray] | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Quantise a state dict for ``weights.safetensors``.

    tensors: name -> tensor of any shape (floating, or integer buffers kept as they are).
    precision: one of :data:`PRECISIONS`. Under an integer precision, each tensor gets the
        smallest error of per-tensor, per-channel along axis 0 and along axis 1, counting
        parameter bytes; codes of < 8 bits are bit-packed; floating tensors with fewer than
        :data:`MIN_QUANT_NUMEL` elements or < 2 dims (biases, norms) stay float16.

    Returns ``(stored, qinfo)``: ``stored`` name -> contiguous CPU tensor of a dtype safetensors
    writes (uint8 codes, float16/bfloat16/float32, the ``"__qparams__"`` float32 vector);
    ``qinfo`` a JSON-serialisable description. Codes keep each tensor's name.
    step_scales: name -> factor >= 1 (a float, or an array with one per quantisation channel
        of the tensor) for affine tensors whose quantisation step should be that many times
        the range-covering one (codes then use about ``levels / factor`` of the levels: fewer
        bits once entropy-coded, :mod:`neurep.formats._entropy`).
    Raises ``ValueError`` for an unknown precision, non-finite values, or a tensor named
    ``"__qparams__"``.
    """
    bits = precision_bits(precision)
    if PARAMS_TENSOR in tensors:
        raise ValueError(f"{PARAMS_TENSOR!r} is reserved for the quantisation parameters")
    stored: dict[str, torch.Tensor] = {}
    entries: dict[str, dict] = {}
    params: list[np.ndarray] = []
    n_params = 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"expected str -> torch.Tensor, got {type(name)} -> {type(t)}")
        t = t.detach().to("cpu")
        entry: dict[str, Any] = {"dtype": _dtype_name(t.dtype, name), "shape": list(t.shape)}
        entry["stored"] = name
        if not t.is_floating_point():
            entry.update(method="raw", stored_dtype=entry["dtype"])
            stored[name] = t.clone(memory_format=torch.contiguous_format)
            entries[name] = entry
            continue
        x = t.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"tensor {name!r} has non-finite values (or values beyond float32)")
        if bits is None or not is_affine(x):
            target = precision if bits is None else "float16"
            if target == "float16" and _absmax(x) > _FP16_MAX:
                target = "float32"  # float16 would overflow to inf
            entry.update(method="cast", stored_dtype=target)
            # clone: never alias the caller's tensors (tied weights would share memory, which
            # safetensors refuses, and later training would change what is stored)
            stored[name] = x.to(FLOAT_DTYPES[target]).clone(memory_format=torch.contiguous_format)
            entries[name] = entry
            continue
        codes, scale, offset, used, axis = _quantize_rows(x.numpy(), bits, (0, 1), 8, True)
        factor = (step_scales or {}).get(name, 1.0)
        if np.any(np.asarray(factor) != 1.0):
            codes, scale = _coarser(x.numpy(), used, axis, scale, offset, bits, factor)
        packed = bits < 8
        flat = _pack(codes.reshape(-1), bits) if packed else codes
        stored[name] = torch.from_numpy(np.ascontiguousarray(flat))
        entry.update(method="affine", bits=bits, granularity=used, packed=packed)
        if used == "channel":
            entry["axis"] = axis
        entry["params"] = n_params  # scales at [n_params, +C), offsets at [+C, +2C)
        params += [scale, offset]
        n_params += 2 * scale.size
        entries[name] = entry
    if params:
        stored[PARAMS_TENSOR] = torch.from_numpy(np.concatenate(params).astype(np.float32))
    qinfo: dict[str, Any] = {"version": QINFO_VERSION, "precision": precision}
    if params:
        qinfo["params_tensor"] = PARAMS_TENSOR
    qinfo["tensors"] = entries
    return stored, qinfo


def _absmax(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


def _dtype_name(dtype: torch.dtype, name: str) -> str:
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"tensor {name!r} has dtype {dtype}, which neurep does not store")
    return DTYPE_NAMES[dtype]


def dequantize_tensors(
    stored: dict[str, torch.Tensor],
    qinfo: Any,
    expected: dict[str, tuple[str, tuple[int, ...]]] | None = None,
) -> dict[str, torch.Tensor]:
    """Rebuild the state dict: floating tensors as float32 (original shape), raw ones unchanged.

    stored: what :func:`quantize_tensors` returned (e.g. read back with plain safetensors).
    expected: name -> (dtype name, shape) of the decoder's state dict, in its order; needed
        for (and only used by) the compact layout of format 1.1 (``qinfo["version"] == 2``,
        :mod:`neurep.formats._compact`).
    Validates names, dtypes, shapes and parameters against ``qinfo``; raises
    :class:`FormatError` on any mismatch. Deterministic (float64 maths, one rounding).
    """
    if isinstance(qinfo, dict) and qinfo.get("version") == COMPACT_VERSION:
        require(expected is not None, "the compact layout needs the decoder's tensors")
        stored, qinfo, expected = expand_tensors(stored, qinfo, expected)
    else:
        expected = expected_stored(qinfo)
    require(isinstance(stored, dict), "stored tensors must be a dict")
    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    require(not missing, f"tensors missing from the file: {sorted(missing)[:5]}")
    require(not extra, f"tensors not described by the quantization info: {sorted(extra)[:5]}")
    for name, (dtype, shape) in expected.items():
        t = stored[name]
        require(isinstance(t, torch.Tensor), f"{name!r} is not a tensor")
        got = (DTYPE_NAMES.get(t.dtype), tuple(t.shape))
        if got != (dtype, shape):  # the message is formatted only when it is needed
            require(False, f"{name!r} is {got}, expected {(dtype, shape)}")
    params = None
    if PARAMS_TENSOR in stored:
        params = stored[PARAMS_TENSOR].detach().cpu().numpy()
        require(bool(np.isfinite(params).all()), "quantisation parameters are not finite")
    out: dict[str, torch.Tensor] = {}
    for name, e in qinfo["tensors"].items():
        t = stored[e["stored"]].detach().cpu()
        shape = tuple(e["shape"])
        if e["method"] == "raw":
            out[name] = t.clone()
            continue
        if e["method"] == "cast":
            v = t.to(torch.float32)
            if not torch.isfinite(v).all():
                require(False, f"{name!r} has non-finite values")
            out[name] = v.reshape(shape).contiguous()
            continue
        bits, start = e["bits"], e["params"]
        c = 1 if e["granularity"] == "tensor" else shape[e["axis"]]
        scale, offset = params[start : start + c], params[start + c : start + 2 * c]
        if not (scale >= 0).all():
            require(False, f"{name!r} has a negative scale")
        n = math.prod(shape)
        codes = t.numpy().reshape(-1)
        codes = _unpack(codes, bits, n) if e["packed"] else codes
        if n and int(codes.max()) >= (1 << bits):
            require(False, f"{name!r} has codes above {bits} bits")
        out[name] = torch.from_numpy(_values(codes, shape, scale, offset, e.get("axis", 0)))
    return out


# ---------------------------------------------------------------------------------------------
# one array (embedding -> zarr)
# ---------------------------------------------------------------------------------------------


def quantize_array(x: np.ndarray, precision: str, *, axis: int = 0) -> tuple[np.ndarray, dict]:
    """Quantise one floating array (an embedding, e.g. (B, E, *s); use ``axis=1`` for E).

    Returns ``(codes, qinfo)``. codes: same shape as ``x``; uint8 for int precisions (not
    bit-packed, so zarr can chunk it per frame; a zarr zstd codec recovers the unused bits),
    float32/float16 for those precisions, and uint16 *bit patterns* for bfloat16 (numpy and
    zarr have no bfloat16). Integer codes are per-tensor or per-channel along ``axis``,
    whichever has the smaller error once the per-channel lists' extra JSON bytes are charged
    for; ``qinfo`` holds the scales/offsets as JSON numbers.
    """
    bits = precision_bits(precision)
    x = np.asarray(x)
    if x.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"quantize_array needs a float16/32/64 array, got {x.dtype}")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        raise ValueError("array has non-finite values (or values beyond float32)")
    qinfo: dict[str, Any] = {"version": QINFO_VERSION, "precision": precision}
    qinfo.update(dtype=str(x.dtype), shape=list(x.shape))
    if bits is None:
        if precision == "float16" and np.abs(x32).max(initial=0.0) > _FP16_MAX:
            raise ValueError("array has values beyond float16's range; use float32 or bfloat16")
        qinfo.update(method="cast", stored_dtype=precision)
        if precision == "bfloat16":
            t = torch.from_numpy(x32).to(torch.bfloat16).view(torch.int16)
            return t.numpy().view(np.uint16).copy(), qinfo
        return x32.astype(precision), qinfo
    if x.size == 0:
        codes, used = np.zeros(x.shape, np.uint8), "tensor"
        scale, offset = np.zeros(1, np.float32), np.zeros(1, np.float32)
    else:  # one more (scale, offset) pair costs about 40 bytes of JSON
        axis = _axis(axis, x.ndim)
        codes, scale, offset, used, axis = _quantize_rows(x32, bits, (axis,), 40)
    qinfo.update(method="affine", bits=bits, granularity=used, stored_dtype="uint8")
    if used == "channel":
        qinfo["axis"] = axis
    qinfo.update(scale=[float(v) for v in scale], offset=[float(v) for v in offset])
    return codes.reshape(x.shape), qinfo


def dequantize_array(codes: Any, qinfo: Any) -> np.ndarray:
    """codes (as stored) + qinfo -> float32 array of the original shape. Raises FormatError.

    A compact (version 2) qinfo takes dtype and shape from the codes themselves.
    """
    if isinstance(qinfo, dict) and qinfo.get("version") == COMPACT_VERSION:
        require(isinstance(codes, np.ndarray), "codes must be a numpy array")
        qinfo = expand_array(qinfo, codes.shape)
    dtype, shape = expected_array(qinfo)
    ok = isinstance(codes, np.ndarray) and codes.dtype == np.dtype(dtype)
    if not (ok and codes.shape == shape):  # the message is formatted only when needed
        require(False, f"codes must be {dtype} {shape}")
    if qinfo["method"] == "cast":
        if dtype == "uint16":
            t = torch.from_numpy(codes.astype(np.int16, copy=True)).view(torch.bfloat16)
            out = t.to(torch.float32).numpy()
        else:
            out = codes.astype(np.float32)
        require(bool(np.isfinite(out).all()), "array has non-finite values")
        return out
    with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, refused below
        scale = np.asarray(qinfo["scale"], dtype=np.float64).astype(np.float32)
        offset = np.asarray(qinfo["offset"], dtype=np.float64).astype(np.float32)
    require(bool(np.isfinite(scale).all() & np.isfinite(offset).all()), "parameters beyond float32")
    require(bool((scale >= 0).all()), "negative scale")
    require(codes.size == 0 or int(codes.max()) < (1 << qinfo["bits"]), "codes above bits")
    return _values(codes.reshape(-1), shape, scale, offset, qinfo.get("axis", 0))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _values(
    codes: np.ndarray, shape: tuple[int, ...], scale: np.ndarray, offset: np.ndarray, axis: int
) -> np.ndarray:
    """codes (n,) in C order of ``shape`` -> float32 values of ``shape``."""
    if scale.size == 1:
        return _affine_values(codes.reshape(1, -1), scale, offset).reshape(shape)
    moved = (shape[axis], *shape[:axis], *shape[axis + 1 :])
    rows = np.moveaxis(codes.reshape(shape), axis, 0).reshape(shape[axis], -1)  # (C, M)
    v = _affine_values(rows, scale, offset).reshape(moved)
    return np.ascontiguousarray(np.moveaxis(v, 0, axis))


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"axis {axis} out of range for {ndim} dims")
    return axis % max(ndim, 1)
