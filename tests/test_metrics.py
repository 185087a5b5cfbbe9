"""neurep.metrics: PSNR, MS-SSIM and bits per pixel against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_msssim
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurep import metrics

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(("data_range", "error"), [(255, 1), (255, 3), (1.0, 0.01), (65535, 7)])
def test_psnr_of_a_uniform_error_is_20_log10_range_over_error(data_range, error):
    reference = RNG.random((3, 16, 16)) * data_range
    assert metrics.psnr(reference, reference + error, data_range) == pytest.approx(
        20 * math.log10(data_range / error)
    )


def test_psnr_counts_the_mean_of_squared_errors():
    reference = np.zeros(4)
    test = np.array([0.0, 0.0, 0.0, 2.0])  # MSE = 1
    assert metrics.psnr(reference, test, 10.0) == pytest.approx(20.0)


def test_psnr_is_infinite_for_identical_inputs_and_takes_tensors():
    values = torch.rand(2, 3, 5, 5)
    assert metrics.psnr(values, values.clone(), 1.0) == math.inf
    assert metrics.psnr(values, values.numpy() + 0.1, 1.0) == pytest.approx(20.0, rel=1e-5)


def test_psnr_does_not_overflow_with_integer_inputs():
    reference = np.zeros((8, 8), np.uint8)
    test = np.full((8, 8), 255, np.uint8)  # uint8 arithmetic would wrap
    assert metrics.psnr(reference, test, 255) == pytest.approx(0.0)


@pytest.mark.parametrize("bad_range", [0, -1.0])
def test_psnr_refuses_a_non_positive_range(bad_range):
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(np.zeros(3), np.ones(3), bad_range)


def test_psnr_refuses_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((2, 3)), np.zeros((3, 2)), 1.0)


@settings(max_examples=30, deadline=None)
@given(error=st.floats(1e-3, 10.0), data_range=st.floats(1.0, 1e4), size=st.integers(1, 50))
def test_psnr_formula_holds_for_any_uniform_error(error, data_range, size):
    reference = np.linspace(0, data_range, size)
    value = metrics.psnr(reference, reference - error, data_range)
    assert value == pytest.approx(20 * math.log10(data_range / error), rel=1e-9)


def test_ms_ssim_of_identical_images_is_one():
    image = RNG.random((3, 192, 200))
    assert metrics.ms_ssim(image, image, 1.0) == pytest.approx(1.0)


def test_ms_ssim_matches_pytorch_msssim_for_large_images_and_accepts_chw():
    reference = torch.rand(1, 3, 176, 180, dtype=torch.float64) * 255
    test = (reference + 20 * torch.randn(reference.shape, dtype=torch.float64)).clamp(0, 255)
    expected = pytorch_msssim.ms_ssim(reference, test, data_range=255).item()
    assert metrics.ms_ssim(reference, test, 255) == pytest.approx(expected)
    assert metrics.ms_ssim(reference[0], test[0].numpy(), 255) == pytest.approx(expected)
    assert metrics.ms_ssim_method(176, 180) == "ms-ssim"


def test_ms_ssim_falls_back_to_ssim_below_161_pixels():
    reference = torch.rand(1, 1, 64, 300, dtype=torch.float64)
    test = (reference + 0.1 * torch.randn(reference.shape, dtype=torch.float64)).clamp(0, 1)
    expected = pytorch_msssim.ssim(reference, test, data_range=1.0, win_size=11).item()
    assert metrics.ms_ssim_method(64, 300) == "ssim"
    assert metrics.ms_ssim(reference, test, 1.0) == pytest.approx(expected)


def test_tiny_images_get_ssim_with_a_smaller_window_and_degrade_with_noise():
    reference = RNG.random((1, 6, 9))
    noisy = np.clip(reference + 0.3 * RNG.standard_normal(reference.shape), 0, 1)
    assert metrics.ms_ssim_method(6, 9) == "ssim-win5"
    assert metrics.ms_ssim(reference, reference, 1.0) == pytest.approx(1.0)
    assert metrics.ms_ssim(reference, noisy, 1.0) < 0.9


def test_ms_ssim_says_clearly_when_an_image_is_too_small():
    assert metrics.ms_ssim_method(2, 50) == "none"
    with pytest.raises(ValueError, match="at least 3 pixels"):
        metrics.ms_ssim(np.zeros((1, 2, 50)), np.zeros((1, 2, 50)), 1.0)


def test_ms_ssim_decreases_as_noise_grows():
    reference = torch.rand(1, 3, 170, 170, dtype=torch.float64)
    noise = torch.randn(reference.shape, dtype=torch.float64)
    scores = [
        metrics.ms_ssim(reference, (reference + s * noise).clamp(0, 1), 1.0)
        for s in (0.02, 0.1, 0.3)
    ]
    assert scores[0] > scores[1] > scores[2]


def test_ms_ssim_refuses_other_layouts():
    with pytest.raises(ValueError, match="B, C, H, W"):
        metrics.ms_ssim(np.zeros((10, 10)), np.zeros((10, 10)), 1.0)


def test_bits_per_pixel_is_eight_bits_per_byte_over_pixels():
    assert metrics.bits_per_pixel(49152, 768 * 512) == pytest.approx(1.0)
    assert metrics.bits_per_pixel(0, 10) == 0.0
    with pytest.raises(ValueError):
        metrics.bits_per_pixel(100, 0)
    with pytest.raises(ValueError):
        metrics.bits_per_pixel(-1, 10)
