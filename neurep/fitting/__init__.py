"""Fitting: presets and the loop that overfits a network to one signal."""

from neurep.fitting.loop import FitResult, fit_signal, pad_to, psnr_from_mse
from neurep.fitting.presets import PRESETS, Plan, Preset, get_preset, plan

__all__ = [
    "PRESETS",
    "FitResult",
    "Plan",
    "Preset",
    "fit_signal",
    "get_preset",
    "pad_to",
    "plan",
    "psnr_from_mse",
]
