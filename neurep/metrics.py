"""Quality and size measures: PSNR, MS-SSIM (through pytorch-msssim) and bits per pixel.

These functions compare two arrays already in the same units. To measure a fitted datum the
way docs/ARCHITECTURE.md ("Measuring quality") asks (on values rounded to the original dtype,
in original units), use :meth:`neurep.modalities.ModalityAdapter.quality`, which calls these
with the right range.

MS-SSIM and small images
------------------------
Five-scale MS-SSIM with the standard 11-tap Gaussian window needs the shorter side to be
over 160 pixels (four halvings, the window still fitting at the coarsest scale), which
``pytorch_msssim.ms_ssim`` enforces. :func:`ms_ssim` therefore computes

* shorter side > 160: five-scale MS-SSIM, standard weights (``pytorch_msssim.ms_ssim``);
* 11 <= shorter side <= 160: single-scale SSIM with the 11-tap window
  (``pytorch_msssim.ssim``);
* 3 <= shorter side < 11: single-scale SSIM with the largest odd window that fits;
* shorter side < 3: ValueError.

:func:`ms_ssim_method` names the variant used for a given image size, so reports can say so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

MS_SSIM_WINDOW = 11
MS_SSIM_SCALES = 5
MIN_MS_SSIM_SIDE = (MS_SSIM_WINDOW - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1  # 161
MIN_SSIM_SIDE = 3

__all__ = [
    "MIN_MS_SSIM_SIDE",
    "MIN_SSIM_SIDE",
    "bits_per_pixel",
    "ms_ssim",
    "ms_ssim_method",
    "psnr",
    "psnr_from_mse",
]


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """``10 log10(data_range² / mse)`` in dB; ``inf`` when ``mse`` is 0."""
    return math.inf if mse <= 0 else 10.0 * math.log10(float(data_range) ** 2 / mse)


def psnr(reference: Any, test: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)``, ``inf`` if equal.

    ``reference`` and ``test`` are numpy arrays, torch tensors or nested sequences of the same
    shape; the mean squared error is taken over all elements in float64.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    ref = _as_float64(reference)
    tst = _as_float64(test)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, test {tst.shape}")
    if ref.size == 0:
        raise ValueError("cannot measure PSNR of empty arrays")
    return psnr_from_mse(float(np.mean((ref - tst) ** 2)), data_range)


def ms_ssim(reference: Any, test: Any, data_range: float) -> float:
    """MS-SSIM of ``test`` against ``reference``, both ``(B, C, H, W)`` or ``(C, H, W)``.

    Values are expected in ``[0, data_range]``. Averaged over batch and channels. Images with
    a shorter side of 160 pixels or less get single-scale SSIM instead (see the module notes
    and :func:`ms_ssim_method`).
    """
    import pytorch_msssim

    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    ref = _as_batch(reference)  # (B, C, H, W)
    tst = _as_batch(test)  # (B, C, H, W)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: reference {tuple(ref.shape)}, test {tuple(tst.shape)}")
    side = min(ref.shape[-2:])
    if side < MIN_SSIM_SIDE:
        raise ValueError(
            f"SSIM needs at least {MIN_SSIM_SIDE} pixels on each side; got {tuple(ref.shape[-2:])}"
        )
    if side >= MIN_MS_SSIM_SIDE:
        value = pytorch_msssim.ms_ssim(ref, tst, data_range=data_range, win_size=MS_SSIM_WINDOW)
    else:
        window = _ssim_window(side)
        value = pytorch_msssim.ssim(ref, tst, data_range=data_range, win_size=window)
    return float(value)


def ms_ssim_method(height: int, width: int) -> str:
    """Which variant :func:`ms_ssim` computes for an ``height x width`` image.

    ``"ms-ssim"`` (five scales), ``"ssim"`` (one scale, 11-tap window), ``"ssim-win{k}"``
    (one scale, ``k``-tap window) or ``"none"`` (too small: ms_ssim raises).
    """
    side = min(height, width)
    if side < MIN_SSIM_SIDE:
        return "none"
    if side >= MIN_MS_SSIM_SIDE:
        return "ms-ssim"
    window = _ssim_window(side)
    return "ssim" if window == MS_SSIM_WINDOW else f"ssim-win{window}"


def bits_per_pixel(nbytes: int, num_pixels: int) -> float:
    """``nbytes * 8 / num_pixels``: the headline size of a file (use the real file bytes)."""
    if num_pixels <= 0:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")
    if nbytes < 0:
        raise ValueError(f"nbytes must not be negative, got {nbytes}")
    return nbytes * 8 / num_pixels


def _ssim_window(side: int) -> int:
    """The largest odd window up to the standard 11 that fits in ``side`` pixels."""
    window = min(MS_SSIM_WINDOW, side)
    return window if window % 2 == 1 else window - 1


def _as_float64(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _as_batch(values: Any) -> torch.Tensor:
    """``(C, H, W)`` or ``(B, C, H, W)`` values as a float64 ``(B, C, H, W)`` tensor."""
    tensor = torch.from_numpy(np.ascontiguousarray(_as_float64(values)))
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        shape = tuple(tensor.shape)
        raise ValueError(f"expected (B, C, H, W) or (C, H, W) values, got shape {shape}")
    return tensor
