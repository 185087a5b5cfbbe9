"""S3KConvNd output shapes follow the ConvNd formula (and torch.nn.ConvNd), and bad inputs or
arguments raise ValueErrors that say what is wrong."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from s3k_oracle import LayerConfig, layer_configs

from neurep.nn import S3KConv1d, S3KConv2d, S3KConv3d, S3KConvNd, conv_output_shape

TORCH_CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}


@st.composite
def conv_geometries(draw: st.DrawFn, ndims: tuple[int, ...] = (1, 2, 3)):
    """(spatial, kernel, stride, padding) with the padded input at least one window."""
    d = draw(st.sampled_from(ndims))
    spatial, kernel, stride, padding = [], [], [], []
    for _ in range(d):
        k = draw(st.integers(1, 9))
        p = draw(st.integers(0, 4))
        kernel.append(k)
        padding.append(p)
        stride.append(draw(st.integers(1, 12)))
        spatial.append(draw(st.integers(max(1, k - 2 * p), 40)))
    return tuple(spatial), tuple(kernel), tuple(stride), tuple(padding)


@settings(max_examples=60, deadline=None)
@given(geometry=conv_geometries())
def test_conv_output_shape_formula_agrees_with_torch_conv(geometry) -> None:
    spatial, kernel, stride, padding = geometry
    conv = TORCH_CONV[len(spatial)](1, 1, kernel, stride, padding, bias=False)
    expected = conv(torch.zeros(1, 1, *spatial)).shape[2:]
    assert conv_output_shape(spatial, kernel, stride, padding) == tuple(expected)


@settings(max_examples=30, deadline=None)
@given(cfg=layer_configs(ndims=(1, 2, 3)))
def test_layer_output_shape_equals_torch_conv_output_shape(cfg: LayerConfig) -> None:
    layer = cfg.build()
    x = cfg.input()
    conv = TORCH_CONV[cfg.ndim](
        cfg.in_channels, cfg.out_channels, cfg.kernel_size, cfg.stride, cfg.padding
    )
    with torch.no_grad():
        out = layer(x)
        expected = conv.double()(x).shape
    assert out.shape == expected
    assert out.shape[2:] == conv_output_shape(cfg.spatial, cfg.kernel_size, cfg.stride, cfg.padding)


@settings(max_examples=15, deadline=None)
@given(cfg=layer_configs(ndims=(4,)))
def test_4d_layer_output_shape_follows_the_conv_formula(cfg: LayerConfig) -> None:
    with torch.no_grad():
        out = cfg.build()(cfg.input())
    by_hand = tuple(
        (s + 2 * p - k) // st + 1
        for s, k, st, p in zip(cfg.spatial, cfg.kernel_size, cfg.stride, cfg.padding, strict=True)
    )
    assert out.shape == (cfg.batch, cfg.out_channels, *by_hand)


def test_default_stride_is_the_window_and_remainders_are_dropped_like_conv() -> None:
    layer = S3KConv2d(3, 4, (4, 3))
    assert layer.stride == (4, 3)
    assert layer(torch.zeros(1, 3, 10, 7)).shape == (1, 4, 2, 2)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (S3KConv1d(2, 3, 5), (1, 2, 4)),
        (S3KConv2d(2, 3, (2, 6), padding=(0, 1)), (1, 2, 4, 3)),
        (S3KConv3d(2, 3, 3, padding=0), (1, 2, 3, 3, 2)),
    ],
)
def test_window_larger_than_padded_input_raises_value_error(layer: S3KConvNd, shape) -> None:
    with pytest.raises(ValueError, match="smaller than the window"):
        layer(torch.zeros(shape))


def test_padding_can_make_a_short_input_fit_the_window() -> None:
    assert S3KConv1d(2, 3, 5, padding=1)(torch.zeros(1, 2, 3)).shape == (1, 3, 1)


def test_wrong_channel_count_raises_value_error() -> None:
    with pytest.raises(ValueError, match="expected 3 input channels, got 2"):
        S3KConv2d(3, 4, 2)(torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize("shape", [(1, 3, 8), (3, 8, 8), (1, 3, 8, 8, 8)])
def test_wrong_number_of_dimensions_raises_value_error(shape) -> None:
    with pytest.raises(ValueError, match="expects input"):
        S3KConv2d(3, 4, 2)(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": (2, 2, 2)},
        {"kernel_size": 2, "stride": (1,)},
        {"kernel_size": 2, "padding": (0, 0, 0)},
        {"kernel_size": 0},
        {"kernel_size": 2, "stride": 0},
        {"kernel_size": 2, "padding": -1},
    ],
)
def test_bad_geometry_arguments_raise_value_error(kwargs) -> None:
    with pytest.raises(ValueError):
        S3KConvNd(1, 1, ndim=2, **kwargs)


@pytest.mark.parametrize("dt_init", [(0.1, 0.01), (0.0, 0.1), (1e-3, 100.0), (1e-3,)])
def test_step_size_ranges_outside_the_allowed_one_raise_value_error(dt_init) -> None:
    with pytest.raises(ValueError, match="dt_init"):
        S3KConvNd(1, 1, 2, ndim=2, dt_init=dt_init)


def test_zero_spatial_dimensions_raise_value_error() -> None:
    with pytest.raises(ValueError, match="ndim"):
        S3KConvNd(1, 1, 2, ndim=0)


def test_unknown_implementation_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="implementation"):
        S3KConv2d(1, 1, 2, implementation="fsat")
