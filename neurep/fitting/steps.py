"""Quantisation steps chosen by measured rate and distortion, per weight tensor.

Min-max int8 codes cover each tensor's (or channel's) range in 255 steps; once the codes are
entropy-coded (format 1.2), a step k times coarser costs about log2(k) fewer bits a weight.
After a fit, :func:`coarsen_steps` tries coarser steps on the tensors that hold most of the
codes, largest first, keeping each that leaves the stored datum's PSNR within
``budget_db`` of the plain min-max quantisation's (measured on the real decode, not
modelled), and returns the smaller datum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from neurep.datum import NeuralDatum

__all__ = ["DEFAULT_BUDGET_DB", "STEP_FACTORS", "coarsen_steps"]

#: Coarser steps tried per tensor, mildest first (a tensor stops at its first refusal).
STEP_FACTORS = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
#: PSNR the coarser steps may cost in all, against min-max int8 codes (dB).
DEFAULT_BUDGET_DB = 0.08
#: Tensors with fewer weights than this share of the affine codes keep min-max steps.
MIN_SHARE = 0.05
#: Decoders with fewer affine weights are stored with min-max steps: the bytes a choice could
#: save are fewer than the measurements would cost in time.
MIN_WEIGHTS = 16384


def coarsen_steps(
    stored_with: Callable[[dict[str, float] | None], NeuralDatum],
    budget_db: float = DEFAULT_BUDGET_DB,
) -> NeuralDatum:
    """The datum with the coarsest per-tensor steps within ``budget_db`` of the default's
    PSNR, or the default itself.

    stored_with: step scales (name -> factor) -> the stored, measured datum.
    """
    base = stored_with(None)
    psnr = _psnr(base)
    sizes = _affine_sizes(base)
    if psnr is None or sum(sizes.values()) < MIN_WEIGHTS:
        return base
    total = sum(sizes.values())
    chosen: dict[str, float] = {}
    best = base
    for name in sorted(sizes, key=sizes.get, reverse=True):
        if sizes[name] < MIN_SHARE * total:
            break
        for factor in STEP_FACTORS:
            candidate = stored_with({**chosen, name: factor})
            quality = _psnr(candidate)
            if quality is None or psnr - quality > budget_db:
                break
            chosen[name], best = factor, candidate
    return best


def _psnr(datum: NeuralDatum) -> float | None:
    value = (datum.metadata.get("quality") or {}).get("psnr")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _affine_sizes(datum: NeuralDatum) -> dict[str, int]:
    """Weights per affine-coded tensor of the decoder (name -> elements)."""
    quantization = datum.metadata["weights"].get("quantization") or {}
    layout = quantization.get("layout", "")
    state = datum.decoder.state_dict()
    return {
        name: tensor.numel()
        for (name, tensor), letter in zip(state.items(), layout, strict=False)
        if letter not in "fhbr"
    }
