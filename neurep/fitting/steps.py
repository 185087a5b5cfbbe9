"""Quantisation steps chosen by measured rate and distortion, per weight tensor.

Min-max int8 codes cover each tensor's (or channel's) range in 255 steps; once the codes are
entropy-coded (format 1.2), a step k times coarser costs about log2(k) fewer bits a weight.
After a fit, :func:`coarsen_steps` coarsens the steps of the tensors that hold most of the
codes, each round the one that saves the most bytes per dB, while the stored datum's PSNR
stays within ``budget_db`` of plain min-max quantisation's (measured on the real decode,
not modelled), and returns the smaller datum.
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
    """The datum with per-tensor steps within ``budget_db`` of the default's PSNR, or the
    default itself.

    Steps are coarsened one tensor at a time, each round taking the candidate (a tensor's
    next factor) that saves the most stored bytes per dB it costs, until no candidate fits
    the budget. stored_with: step scales (name -> factor) -> the stored, measured datum.
    """
    base = stored_with(None)
    psnr = _psnr(base)
    sizes = _affine_sizes(base)
    total = sum(sizes.values())
    if psnr is None or total < MIN_WEIGHTS:
        return base
    names = [name for name in sizes if sizes[name] >= MIN_SHARE * total]
    next_factor = dict.fromkeys(names, 0)  # index into STEP_FACTORS
    chosen: dict[str, float] = {}
    best, best_bytes, best_loss = base, _stored_bytes(base), 0.0
    while True:
        options = []
        for name in names:
            if next_factor[name] >= len(STEP_FACTORS):
                continue
            candidate = stored_with({**chosen, name: STEP_FACTORS[next_factor[name]]})
            quality = _psnr(candidate)
            loss = math.inf if quality is None else psnr - quality
            if loss > budget_db:  # coarser steps of this tensor would cost more still
                next_factor[name] = len(STEP_FACTORS)
                continue
            saved = best_bytes - _stored_bytes(candidate)
            options.append((saved / max(loss - best_loss, 1e-3), name, candidate, loss))
        if not options:
            return best
        _, name, best, best_loss = max(options, key=lambda option: option[0])
        chosen[name] = STEP_FACTORS[next_factor[name]]
        next_factor[name] += 1
        best_bytes = _stored_bytes(best)


def _stored_bytes(datum: NeuralDatum) -> int:
    """Bytes of the stored weights and embedding codes (what the steps change)."""
    datum.freeze_storage()
    tensors, codes = datum._stored
    return sum(t.numel() * t.element_size() for t in tensors.values()) + codes.nbytes


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
