"""ArrayAdapter: 1-D to 3-D numpy arrays, torch tensors and .npy files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_tests import AdapterTests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurep.errors import InputError
from neurep.modalities import ArrayAdapter, ImageAdapter, adapter_from_config, resolve

RNG = np.random.default_rng(99)
ARRAY_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "int64"]
ARRAY_DTYPES += ["float16", "float32", "float64"]

CASES = {
    "numpy-float64-1d": lambda: np.sin(np.linspace(0, 20, 300)),
    "numpy-float32-3d": lambda: RNG.standard_normal((6, 7, 8)).astype(np.float32),
    "numpy-float16-2d": lambda: RNG.standard_normal((9, 5)).astype(np.float16),
    "numpy-int16-2d": lambda: RNG.integers(-3000, 3000, (10, 11)).astype(np.int16),
    "numpy-uint8-3d-volume": lambda: RNG.integers(0, 256, (3, 20, 20)).astype(np.uint8),
    "numpy-int64-1d": lambda: RNG.integers(-(10**9), 10**9, 50),
    "numpy-bool-3d": lambda: RNG.random((5, 6, 7)) > 0.7,
    "numpy-bool-all-true": lambda: np.ones((4, 4), dtype=bool),
    "numpy-constant-float": lambda: np.full(10, -7.25),
    "numpy-bigendian-int32": lambda: np.arange(-20, 20, dtype=">i4").reshape(5, 8),
    "torch-float32-1d": lambda: torch.linspace(-1, 1, 64),
    "torch-int32-3d": lambda: torch.randint(-50, 50, (4, 5, 6), dtype=torch.int32),
    "torch-bool-2d": lambda: torch.rand(8, 9) > 0.5,
    "torch-bfloat16-2d": lambda: torch.randn(6, 6).to(torch.bfloat16),
    "torch-uint8-1d": lambda: torch.arange(0, 200, 3, dtype=torch.uint8),
}


class TestArrayAdapter(AdapterTests):
    adapter_cls = ArrayAdapter

    @pytest.fixture(params=[*CASES, "file-npy-3d", "file-npy-bool"])
    def case(self, request, tmp_path):
        name = request.param
        if name == "file-npy-3d":
            path = tmp_path / "volume.npy"
            np.save(path, RNG.standard_normal((4, 5, 6)))
            return path
        if name == "file-npy-bool":
            path = tmp_path / "mask.npy"
            np.save(path, RNG.random((6, 7)) > 0.5)
            return str(path)
        return CASES[name]()

    def signature(self, obj):
        if isinstance(obj, torch.Tensor):
            return (torch.Tensor, tuple(obj.shape), str(obj.dtype))
        return (np.ndarray, tuple(obj.shape), obj.dtype.name)

    def expected_signature(self, original):
        if isinstance(original, str | Path):
            return self.signature(np.load(original))
        return self.signature(original)

    def invalid_inputs(self):
        return [
            np.float64(3.0),
            np.array(3.0),
            np.zeros((2, 2, 2, 2)),
            np.zeros((0, 4)),
            np.array([1.0, np.nan]),
            np.array([1.0, -np.inf], dtype=np.float32),
            torch.tensor([1.0, float("inf")]),
            np.zeros(4, dtype=np.complex128),
            torch.zeros(4, dtype=torch.complex64),
            np.array(["a", "b"]),
            np.array([object(), object()]),
            "missing.npy",
            [1, 2, 3],
        ]

    def foreign_objects(self):
        return [*super().foreign_objects(), "image.png", [1.0, 2.0], (3, 4)]


# ---- behaviour specific to arrays ------------------------------------------------------------


def test_signal_is_min_max_scaled_and_one_channel():
    values = np.array([[2, 4], [6, 10]], dtype=np.int32)
    adapter, signal = ArrayAdapter.from_object(values)
    assert adapter.configuration.value_range == [2, 10]
    assert signal.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(signal.numpy().ravel(), [0, 0.25, 0.5, 1])


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_spatial_ndim_follows_the_array(ndim):
    adapter, signal = ArrayAdapter.from_object(np.arange(2**ndim, dtype=float).reshape((2,) * ndim))
    assert adapter.spatial_ndim == ndim == signal.ndim - 2


def test_integers_are_rounded_and_clipped_to_the_recorded_range():
    values = np.array([0, 10, 20], dtype=np.int8)
    adapter, _ = ArrayAdapter.from_object(values)
    signal = torch.tensor([[[0.26, 0.74, 1.3]]])  # 5.2, 14.8, 26 in original units
    np.testing.assert_array_equal(adapter.from_signal(signal), np.int8([5, 15, 20]))


def test_booleans_are_thresholded_at_one_half():
    adapter, _ = ArrayAdapter.from_object(np.array([True, False, True]))
    decoded = adapter.from_signal(torch.tensor([[[0.49, 0.5, 0.51]]]))
    np.testing.assert_array_equal(decoded, [False, True, True])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array(1.5), "1 to 3 dimensions"),
        (np.zeros((2, 2, 2, 2)), "1 to 3 dimensions"),
        (np.zeros(3, np.complex64), "complex"),
        (np.array(["x"]), "not numeric"),
        (np.array([0.0, np.nan]), "non-finite"),
        (np.zeros((3, 0)), "empty"),
    ],
)
def test_unusable_arrays_say_what_is_wrong(values, message):
    with pytest.raises(InputError, match=message):
        ArrayAdapter.from_object(values)


def test_npy_files_are_read_without_pickle(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"objects\.npy"):
        ArrayAdapter.from_object(path)


def test_resolve_prefers_image_for_image_like_arrays_and_array_otherwise(tmp_path):
    assert resolve(np.zeros((8, 8, 3), np.uint8)) is ImageAdapter
    assert resolve(np.zeros((3, 8, 8), np.uint8)) is ArrayAdapter
    assert resolve(np.zeros(100)) is ArrayAdapter
    assert resolve(np.zeros((4, 4), np.int32)) is ArrayAdapter
    assert resolve(torch.zeros(6, 4, 4)) is ArrayAdapter
    assert resolve(np.zeros((8, 8, 3), np.uint8), modality="array") is ArrayAdapter
    path = tmp_path / "no_suffix"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(5))
    assert resolve(path) is ArrayAdapter  # by the .npy magic


def test_quality_uses_the_recorded_range():
    original = np.linspace(0.0, 4.0, 400)
    decoded = original + 0.04
    adapter, _ = ArrayAdapter.from_object(original)
    quality = adapter.quality(original, decoded)
    assert quality["psnr"] == pytest.approx(20 * math.log10(4.0 / 0.04))
    assert quality["ms_ssim"] is None  # 1-D: no SSIM
    assert adapter.num_pixels is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from(ARRAY_DTYPES),
    container=st.sampled_from(["numpy", "torch"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_arrays_round_trip(shape, dtype, container, seed):
    generator = np.random.default_rng(seed)
    if dtype == "bool":
        values = generator.random(shape) > 0.5
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        low, high = max(info.min, -(10**6)), min(info.max, 10**6)
        values = generator.integers(low, high, shape, endpoint=True).astype(dtype)
    else:
        values = (generator.standard_normal(shape) * 100).astype(dtype)
    obj = torch.from_numpy(values) if container == "torch" else values
    adapter, signal = ArrayAdapter.from_object(obj)
    assert signal.shape == (1, 1, *shape) and signal.dtype == torch.float32
    assert signal.min() >= 0 and signal.max() <= 1
    rebuilt = adapter_from_config(json.loads(json.dumps(adapter.to_config())))
    decoded = rebuilt.from_signal(signal)
    assert type(decoded) is type(obj) and tuple(decoded.shape) == shape
    restored = decoded.numpy() if container == "torch" else decoded
    assert restored.dtype == values.dtype
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        np.testing.assert_array_equal(restored, values)
    else:
        span = float(values.max()) - float(values.min())
        eps = 1e-3 if dtype == "float16" else 1e-6
        np.testing.assert_allclose(restored.astype(float), values.astype(float), atol=eps * span)
