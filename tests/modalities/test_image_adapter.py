"""ImageAdapter: files, numpy, torch and PIL images in; the same kind back."""

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
from PIL import Image

from neurep import metrics
from neurep.errors import InputError
from neurep.modalities import ImageAdapter, adapter_from_config, resolve
from neurep.modalities.image import PIL_MODE_DTYPES

KODAK = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kodak"
RNG = np.random.default_rng(1234)


def _rgb_uint8(height=13, width=17, channels=3):
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _write(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def _numpy_case(name: str):
    return {
        "numpy-uint8-rgb": lambda: _rgb_uint8(),
        "numpy-uint8-gray": lambda: _rgb_uint8(channels=1)[:, :, 0],
        "numpy-uint8-gray-1ch": lambda: _rgb_uint8(channels=1),
        "numpy-uint8-rgba": lambda: _rgb_uint8(channels=4),
        "numpy-uint16-gray": lambda: RNG.integers(0, 65536, (9, 11), dtype=np.uint16),
        "numpy-float32-rgb": lambda: RNG.random((8, 10, 3), dtype=np.float32) * 4 - 1,
        "numpy-float64-gray": lambda: RNG.random((7, 12)) * 1e3,
        "numpy-float32-constant": lambda: np.full((5, 6, 3), 0.25, dtype=np.float32),
        "numpy-float64-bigendian": lambda: RNG.random((6, 6)).astype(">f8"),
    }[name]()


def _torch_case(name: str):
    return {
        "torch-uint8-chw": lambda: torch.from_numpy(_rgb_uint8().transpose(2, 0, 1).copy()),
        "torch-float32-chw": lambda: torch.rand(3, 9, 14, generator=_seeded(0)),
        "torch-float64-hw": lambda: torch.linspace(-2, 5, 70, dtype=torch.float64).reshape(7, 10),
        "torch-bfloat16-chw": lambda: torch.rand(1, 6, 8).to(torch.bfloat16),
    }[name]()


def _pil_case(name: str):
    mode = name.removeprefix("pil-")
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        channels = len(mode) if mode != "L" else 1
        pixels = _rgb_uint8(channels=channels)
        return Image.frombytes(mode, (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    if mode == "I;16":
        pixels = RNG.integers(0, 65536, (10, 12), dtype=np.uint16)
        return Image.frombytes("I;16", (12, 10), pixels.astype("<u2").tobytes())
    if mode == "1":
        return Image.fromarray(RNG.integers(0, 2, (9, 9)).astype(bool))
    if mode == "F":
        return Image.fromarray(RNG.random((8, 8), dtype=np.float32) - 0.5)
    if mode == "I":
        return Image.fromarray(RNG.integers(-5000, 5000, (8, 9), dtype=np.int32))
    raise AssertionError(name)


def _file_case(name: str, tmp_path: Path) -> Path:
    if name == "file-png-rgb":
        return _write(tmp_path / "rgb.png", Image.fromarray(_rgb_uint8()))
    if name == "file-png-rgba":
        return _write(tmp_path / "rgba.PNG", Image.fromarray(_rgb_uint8(channels=4)))
    if name == "file-png-gray16":
        pixels = RNG.integers(0, 65536, (10, 12), dtype=np.uint16)
        image = Image.frombytes("I;16", (12, 10), pixels.astype("<u2").tobytes())
        return _write(tmp_path / "gray16.png", image)
    if name == "file-png-palette":
        return _write(tmp_path / "palette.png", Image.fromarray(_rgb_uint8()).convert("P"))
    if name == "file-jpeg":
        return _write(tmp_path / "photo.jpg", Image.fromarray(_rgb_uint8(16, 16)), quality=90)
    if name == "file-tiff-float":
        image = Image.fromarray(RNG.random((9, 7), dtype=np.float32) * 100)
        return _write(tmp_path / "field.tif", image)
    if name == "file-webp-lossless":
        image = Image.fromarray(_rgb_uint8(12, 12))
        return _write(tmp_path / "lossless.webp", image, lossless=True)
    raise AssertionError(name)


NUMPY_CASES = [
    "numpy-uint8-rgb",
    "numpy-uint8-gray",
    "numpy-uint8-gray-1ch",
    "numpy-uint8-rgba",
    "numpy-uint16-gray",
    "numpy-float32-rgb",
    "numpy-float64-gray",
    "numpy-float32-constant",
    "numpy-float64-bigendian",
]
TORCH_CASES = ["torch-uint8-chw", "torch-float32-chw", "torch-float64-hw", "torch-bfloat16-chw"]
PIL_CASES = ["pil-RGB", "pil-RGBA", "pil-L", "pil-LA", "pil-CMYK", "pil-I;16", "pil-1", "pil-F"]
PIL_CASES += ["pil-I"]
FILE_CASES = [
    "file-png-rgb",
    "file-png-rgba",
    "file-png-gray16",
    "file-png-palette",
    "file-jpeg",
    "file-tiff-float",
    "file-webp-lossless",
]


class TestImageAdapter(AdapterTests):
    adapter_cls = ImageAdapter

    @pytest.fixture(params=NUMPY_CASES + TORCH_CASES + PIL_CASES + FILE_CASES)
    def case(self, request, tmp_path):
        name = request.param
        if name.startswith("numpy"):
            return _numpy_case(name)
        if name.startswith("torch"):
            return _torch_case(name)
        if name.startswith("pil"):
            return _pil_case(name)
        return _file_case(name, tmp_path)

    def signature(self, obj):
        if isinstance(obj, Image.Image):
            return (Image.Image, (obj.height, obj.width), obj.mode)
        if isinstance(obj, torch.Tensor):
            return (torch.Tensor, tuple(obj.shape), str(obj.dtype))
        return (np.ndarray, tuple(obj.shape), obj.dtype.name)

    def expected_signature(self, original):
        if isinstance(original, Path):
            with Image.open(original) as image:
                image = image.convert("RGB") if image.mode == "P" else image
                pixels = np.asarray(image)
            return (np.ndarray, pixels.shape, pixels.dtype.name)
        return self.signature(original)

    def invalid_inputs(self):
        return [
            np.zeros((0, 5, 3), np.uint8),
            np.zeros((1, 1), np.float32),
            np.zeros((1, 1, 3), np.uint8),
            np.zeros((4, 4, 5), np.uint8),
            np.array([[0.0, np.nan], [1.0, 2.0]]),
            np.array([[0.0, np.inf], [1.0, 2.0]], dtype=np.float32),
            torch.tensor([[0.0, float("nan")], [1.0, 2.0]]),
            np.zeros((4, 4), np.complex64),
            np.zeros((2, 3, 4, 3), np.uint8),
            "does-not-exist.png",
            object(),
        ]

    def foreign_objects(self):
        return [
            *super().foreign_objects(),
            "volume.npy",
            np.zeros(10, np.uint8),
            np.zeros((4, 4, 8), np.uint8),
            np.zeros((4, 4), np.int32),
            np.zeros((4, 4), bool),
            torch.zeros(8, 4, 4),
            torch.zeros(2, 3, 4, 4),
        ]


# ---- behaviour specific to images ------------------------------------------------------------


def test_uint8_scales_by_255_and_uint16_by_65535():
    pixels = np.array([[0, 51, 255]], dtype=np.uint8)
    _, signal = ImageAdapter.from_object(pixels)
    np.testing.assert_array_equal(signal.numpy().ravel(), np.float32([0, 0.2, 1]))
    deep = np.array([[0, 13107, 65535]], dtype=np.uint16)
    _, signal = ImageAdapter.from_object(deep)
    np.testing.assert_allclose(signal.numpy().ravel(), [0, 0.2, 1], rtol=1e-6)


def test_float_image_records_its_min_max_and_maps_it_to_zero_and_one():
    pixels = np.array([[-2.0, 0.0], [1.0, 6.0]])
    adapter, signal = ImageAdapter.from_object(pixels)
    assert adapter.configuration.value_range == [-2.0, 6.0]
    np.testing.assert_allclose(signal.numpy().ravel(), [0, 0.25, 0.375, 1])


def test_constant_float_image_gives_zero_signal_and_decodes_to_the_constant():
    pixels = np.full((4, 6), 3.5, dtype=np.float32)
    adapter, signal = ImageAdapter.from_object(pixels)
    assert signal.abs().max() == 0
    decoded = adapter.from_signal(torch.rand(signal.shape))
    np.testing.assert_array_equal(decoded, pixels)


def test_uint8_decoding_rounds_to_nearest():
    pixels = np.array([[10, 20]], dtype=np.uint8)
    adapter, _ = ImageAdapter.from_object(pixels)
    signal = torch.tensor([[[[10.4 / 255, 20.6 / 255]]]])
    np.testing.assert_array_equal(adapter.from_signal(signal), [[10, 21]])


def test_channel_layouts_map_to_signal_channels():
    hwc = _rgb_uint8(5, 7, 3)
    _, from_numpy = ImageAdapter.from_object(hwc)
    _, from_torch = ImageAdapter.from_object(torch.from_numpy(hwc.transpose(2, 0, 1).copy()))
    assert from_numpy.shape == (1, 3, 5, 7)
    torch.testing.assert_close(from_numpy, from_torch)
    np.testing.assert_allclose(from_numpy[0, 2].numpy(), hwc[:, :, 2] / 255, rtol=1e-6)


def test_file_input_decodes_to_a_numpy_array_and_records_the_file_name(tmp_path):
    path = _write(tmp_path / "holiday.png", Image.fromarray(_rgb_uint8()))
    adapter, signal = ImageAdapter.from_object(str(path))
    assert adapter.configuration.source == "holiday.png"
    assert adapter.configuration.mode == "RGB"
    decoded = adapter.from_signal(signal)
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(path)))


def test_palette_image_is_read_and_returned_as_rgb():
    image = Image.fromarray(_rgb_uint8()).convert("P")
    adapter, signal = ImageAdapter.from_object(image)
    decoded = adapter.from_signal(signal)
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(image.convert("RGB")))


def test_torch_tensors_come_back_on_the_cpu_in_their_dtype():
    tensor = torch.rand(3, 6, 5, dtype=torch.float64)
    adapter, signal = ImageAdapter.from_object(tensor.requires_grad_())
    decoded = adapter.from_signal(signal)
    assert decoded.device.type == "cpu" and decoded.dtype == torch.float64
    torch.testing.assert_close(decoded, tensor.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.zeros((1, 1, 3), np.uint8), "single pixel"),
        (np.zeros((4, 4, 6), np.float32), "channels"),
        (np.array([[1.0, np.nan]]), "non-finite"),
    ],
)
def test_unusable_images_say_what_is_wrong(pixels, message):
    with pytest.raises(InputError, match=message):
        ImageAdapter.from_object(pixels)


def test_a_file_that_is_not_an_image_is_refused_clearly(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("not an image")
    with pytest.raises(InputError, match=r"fake\.png"):
        ImageAdapter.from_object(path)


def test_resolve_by_name_then_extension_then_content(tmp_path):
    png = _write(tmp_path / "picture.data", Image.fromarray(_rgb_uint8()), format="PNG")
    assert resolve(png) is ImageAdapter  # unknown extension: PNG signature sniffed
    assert resolve("anything.JPEG") is ImageAdapter
    assert resolve(Image.new("RGB", (3, 3))) is ImageAdapter
    assert resolve(np.zeros((5, 5), np.uint8)) is ImageAdapter
    assert resolve(np.zeros((5, 5), np.int64), modality="image") is ImageAdapter


def test_quality_measures_psnr_in_original_units():
    original = np.full((20, 20, 3), 100, dtype=np.uint8)
    decoded = original + np.uint8(2)
    adapter, _ = ImageAdapter.from_object(original)
    quality = adapter.quality(original, decoded)
    assert quality["psnr"] == pytest.approx(20 * math.log10(255 / 2))
    assert 0 < quality["ms_ssim"] <= 1


def test_num_pixels_is_height_times_width():
    adapter, _ = ImageAdapter.from_object(torch.rand(3, 11, 7))
    assert adapter.num_pixels == 77


@pytest.mark.skipif(not KODAK.is_dir(), reason="shared Kodak data not present")
def test_kodak_image_round_trips_exactly():
    path = sorted(KODAK.glob("*.png"))[0]
    adapter, signal = ImageAdapter.from_object(path)
    assert signal.shape[:2] == (1, 3) and sorted(signal.shape[2:]) == [512, 768]
    decoded = adapter.from_signal(signal)
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(path)))
    quality = adapter.quality(path, decoded)
    assert quality["psnr"] == math.inf and quality["ms_ssim"] == pytest.approx(1.0)
    config = json.loads(json.dumps(adapter.to_config()))
    assert adapter_from_config(config).num_pixels == 512 * 768


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 12),
    width=st.integers(2, 12),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from(["uint8", "uint16", "float32", "float64"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_numpy_images_round_trip(height, width, channels, dtype, seed):
    generator = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    if dtype.startswith("uint"):
        pixels = generator.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    else:
        pixels = (generator.standard_normal(shape) * 10).astype(dtype)
    assert resolve(pixels) is ImageAdapter
    adapter, signal = ImageAdapter.from_object(pixels)
    assert signal.shape == (1, channels or 1, height, width)
    assert signal.min() >= 0 and signal.max() <= 1
    decoded = adapter_from_config(json.loads(json.dumps(adapter.to_config()))).from_signal(signal)
    assert decoded.shape == pixels.shape and decoded.dtype == pixels.dtype
    if dtype.startswith("uint"):
        np.testing.assert_array_equal(decoded, pixels)
    else:
        span = float(pixels.max() - pixels.min())
        np.testing.assert_allclose(decoded, pixels, rtol=0, atol=1e-6 * span + 1e-12)


def test_quality_ms_ssim_is_the_standard_one_on_raw_8_bit_values():
    original = RNG.integers(40, 200, (170, 172, 3), dtype=np.uint8)  # min above zero on purpose
    noise = RNG.integers(-20, 21, original.shape)
    decoded = np.clip(original.astype(int) + noise, 0, 255).astype(np.uint8)
    adapter, _ = ImageAdapter.from_object(original)
    expected = metrics.ms_ssim(original.transpose(2, 0, 1), decoded.transpose(2, 0, 1), 255)
    assert adapter.quality(original, decoded)["ms_ssim"] == pytest.approx(expected)
    assert metrics.ms_ssim_method(170, 172) == "ms-ssim"


def test_palette_image_with_transparency_is_read_as_rgba():
    image = Image.fromarray(_rgb_uint8(6, 6)).convert("P")
    image.info["transparency"] = 0
    adapter, signal = ImageAdapter.from_object(image)
    assert signal.shape[1] == 4 and adapter.from_signal(signal).mode == "RGBA"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(sorted(set(PIL_MODE_DTYPES) - {"F"})),
    height=st.integers(1, 9),
    width=st.integers(2, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_pil_images_of_integer_modes_round_trip_exactly(mode, height, width, seed):
    dtype = np.dtype(PIL_MODE_DTYPES[mode])
    channels = {"LA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "CMYK": 4}
    shape = (height, width, channels[mode]) if mode in channels else (height, width)
    generator = np.random.default_rng(seed)
    if dtype.kind == "b":
        image = Image.fromarray(generator.random(shape) > 0.5)
    else:
        info = np.iinfo(dtype)
        low, high = max(info.min, -(2**20)), min(info.max, 2**20)
        pixels = generator.integers(low, high, shape, endpoint=True).astype(dtype)
        image = Image.frombytes(mode, (width, height), pixels.tobytes())
    adapter, signal = ImageAdapter.from_object(image)
    decoded = adapter_from_config(json.loads(json.dumps(adapter.to_config()))).from_signal(signal)
    assert decoded.mode == mode and decoded.size == image.size
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(image))
