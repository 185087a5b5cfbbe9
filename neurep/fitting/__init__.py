"""Fitting: presets, the loop that overfits a network to one signal, rate control, and the
pipeline that turns an adapter's signal into a stored datum (:func:`fit_datum`)."""

from neurep.fitting.loop import FitResult, fit_signal, pad_to, psnr_from_mse
from neurep.fitting.pipeline import StorageTarget, fit_datum, fit_datums
from neurep.fitting.presets import PRESETS, Plan, Preset, as_preset, get_preset, plan

__all__ = [
    "PRESETS",
    "FitResult",
    "Plan",
    "Preset",
    "StorageTarget",
    "as_preset",
    "fit_datum",
    "fit_datums",
    "fit_signal",
    "get_preset",
    "pad_to",
    "plan",
    "psnr_from_mse",
]
