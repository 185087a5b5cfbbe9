"""Quantisation-aware final steps: the decoder trains through the quantiser it is stored with.

Weights quantised after fitting lose what the network never learned to tolerate: min-max
int4 rounding of a fitted Kodak decoder costs several dB (RESULTS.md, "Rate"). For the last
steps of a fit the forward pass reads each affine-coded weight rounded exactly as
:func:`neurep.formats.quantize.quantize_tensors` will round it (min-max affine codes at the
stored bits and granularity), and the gradient passes the rounding unchanged
(straight-through estimator), so the weights settle where their rounded values decode well.
Measured on Kodak budget fits, this pays at int4 only (+1.0 dB); at int5 it is even and at
int6 and int8 it costs 0.2-0.3 dB against rounding after the fit, so it is used at int4.

::

    quantiser = FakeQuantiser.for_decoder(decoder, "int5")
    recon = torch.func.functional_call(decoder, quantiser(dict(decoder.named_parameters())), z)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurep.formats.quantize import affine_grid, coarser_scales, is_affine, precision_bits

__all__ = ["QAT_FRACTION", "QAT_MAX_BITS", "FakeQuantiser", "quantisation_aware_steps"]

#: Share of a fit's steps (the last ones) that train through the quantiser.
QAT_FRACTION = 0.2
#: Precisions above this many bits are rounded after the fit (where that measured better).
QAT_MAX_BITS = 4


def quantisation_aware_steps(steps: int, precision: str | None) -> int:
    """How many final steps of a ``steps``-step fit stored at ``precision`` train quantised
    (0 for float precisions, those above :data:`QAT_MAX_BITS`, and fits too short to have a
    final phase)."""
    bits = None if precision is None else precision_bits(precision)
    if bits is None or bits > QAT_MAX_BITS or steps < 10:
        return 0
    return int(steps * QAT_FRACTION)


@dataclass(frozen=True)
class _Grid:
    """One weight's frozen affine grid: rows (C, M) of the weight moved to put ``axis`` first
    (C = 1 per tensor), ``low + step * code`` for codes up to ``top_code``, and where each
    row's extremes sat when the grid was made. :meth:`FakeQuantiser.snap_` pins them at
    ``low`` and ``high``, the ends of storage's min-max range, so that storage finds the same
    grid again. ``step`` is storage's (:func:`~neurep.formats.quantize.affine_grid`) times the
    tensor's step scale (:mod:`neurep.fitting.steps`); ``top_code`` is the last code at or
    below ``high``."""

    axis: int | None  # None: one grid for the whole tensor
    low: torch.Tensor  # (C, 1)
    step: torch.Tensor  # (C, 1)
    high: torch.Tensor  # (C, 1)
    argmin: torch.Tensor  # (C, 1) flat index within the row
    argmax: torch.Tensor  # (C, 1)
    top_code: torch.Tensor  # (C, 1)

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        moved = weight[None] if self.axis is None else weight.movedim(self.axis, 0)
        return moved.reshape(moved.shape[0], -1)

    def unrows(self, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return rows.reshape(like.shape)
        moved = like.movedim(self.axis, 0)
        return rows.reshape(moved.shape).movedim(0, self.axis)


class FakeQuantiser:
    """Rounds named weights to their stored affine grid, straight-through.

    The grids (min-max affine, at the storage's bits and granularity) are fixed when the
    quantiser is made, at the start of the quantised phase: a grid that followed each step's
    extremes would move all of a tensor's rounding at once whenever one extreme weight moved.
    :meth:`snap_` ends the phase: every weight onto its grid, each row's two extremes pinned
    at the grid's ends, so that storage's own min-max quantiser finds the same grid and
    stores exactly the values the last steps trained with.
    """

    def __init__(self, bits: int, grids: dict[str, _Grid]) -> None:
        self.bits = bits
        self.levels = (1 << bits) - 1
        self.grids = grids

    @classmethod
    def for_decoder(
        cls,
        decoder: torch.nn.Module,
        precision: str,
        step_scales: dict[str, float] | None = None,
    ) -> FakeQuantiser:
        """The quantiser ``precision`` (and ``step_scales``: name -> factor >= 1, as
        :func:`~neurep.formats.quantize.quantize_tensors` takes them) would store
        ``decoder``'s current weights with."""
        bits = precision_bits(precision)
        if bits is None:
            raise ValueError(f"{precision!r} is not an integer precision")
        levels = (1 << bits) - 1
        grids = {}
        with torch.no_grad():
            for name, weight in decoder.named_parameters():
                if not is_affine(weight):
                    continue
                values = weight.detach().cpu().numpy()
                granularity, axis, scale, offset = affine_grid(values, bits)
                step = coarser_scales(scale, offset, (step_scales or {}).get(name, 1.0))
                grid = _Grid(None if granularity == "tensor" else axis, *[None] * 6)
                rows = grid.rows(weight)
                argmin, argmax = rows.argmin(dim=1, keepdim=True), rows.argmax(dim=1, keepdim=True)
                # the range's top, rounded down to float32 so that it stays covered
                exact = offset.astype(np.float64) + scale.astype(np.float64) * levels
                high = exact.astype(np.float32)
                high = np.where(high > exact, np.nextafter(high, np.float32(-np.inf)), high)
                with np.errstate(divide="ignore", invalid="ignore"):
                    span = np.where(step > 0, levels * scale.astype(np.float64) / step, 0.0)
                top_code = np.minimum(np.floor(span + 1e-9), levels)
                column = [
                    torch.from_numpy(np.asarray(v, np.float32)).to(weight)[:, None]
                    for v in (offset, np.maximum(step, 1e-12), high, top_code)
                ]
                low, step_column, high_column, top_column = column
                grids[name] = _Grid(
                    grid.axis, low, step_column, high_column, argmin, argmax, top_column
                )
        return cls(bits, grids)

    def __call__(self, parameters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> tensor, every gridded weight replaced by its rounded value in the forward
        pass (its gradient is the identity)."""
        return {
            name: p + (self._rounded(p, self.grids[name]) - p).detach() if name in self.grids else p
            for name, p in parameters.items()
        }

    def _rounded(self, weight: torch.Tensor, grid: _Grid) -> torch.Tensor:
        with torch.no_grad():
            rows = grid.rows(weight)
            codes = torch.round((rows - grid.low) / grid.step)
            codes = torch.minimum(codes.clamp_(min=0), grid.top_code)
            return grid.unrows(grid.low + grid.step * codes, weight)

    def snap_(self, decoder: torch.nn.Module, names: set[str] | None = None) -> None:
        """Put every gridded weight of ``decoder`` (or those in ``names``) on its grid,
        extremes at the grid's ends."""
        with torch.no_grad():
            for name, weight in decoder.named_parameters():
                if name not in self.grids or (names is not None and name not in names):
                    continue
                grid = self.grids[name]
                rows = grid.rows(self._rounded(weight, grid)).clone()
                rows.scatter_(1, grid.argmin, grid.low)
                # at a step scale k, the top of the range is a grid point only when levels/k
                # is whole; otherwise storage rounds this one weight a row like any other
                rows.scatter_(1, grid.argmax, grid.high)
                weight.copy_(grid.unrows(rows, weight))
