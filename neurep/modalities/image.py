"""Images: files, numpy arrays, torch tensors and PIL images <-> signal ``(1, C, H, W)``.

What :meth:`ImageAdapter.from_signal` gives back, per input kind:

==========================  =====================================================================
input                       decoded
==========================  =====================================================================
numpy ``HxW`` / ``HxWxC``   numpy array, same shape and dtype
torch ``CxHxW`` / ``HxW``   torch tensor on the CPU, same shape and dtype
PIL image                   PIL image of the same mode and size (palette ``P``/``PA`` images
                            are read as ``RGB``/``RGBA`` and come back so)
file path (PNG/JPEG/...)    numpy array of the file's pixels as ``numpy.asarray(PIL.Image.open(p))``
                            gives them: ``HxW`` for single-channel modes (``L``, ``I;16``, ``F``,
                            ``1`` as bool), ``HxWxC`` otherwise; palette files become RGB(A).
                            Only the first frame is read and the EXIF orientation is not applied.
==========================  =====================================================================

Files are read with Pillow, so they carry Pillow's limits: 16-bit RGB(A) PNGs arrive as 8-bit
RGB(A) (16-bit grayscale is kept), and of a multi-page TIFF only the first page is read.

Scaling to ``[0, 1]``: uint8 by 255, uint16 by 65535, bool as 0/1; every other dtype (floats,
32-bit ``I`` images) by the datum's own min-max, which is recorded in the configuration.
Decoding clips to that range and rounds integer dtypes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurep.errors import FormatError, InputError
from neurep.modalities import _scaling
from neurep.modalities.base import (
    ModalityAdapter,
    is_path,
    path_suffix,
    read_head,
)
from neurep.modalities.registry import register

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
MAX_CHANNELS = 4
AUTO_NUMPY_DTYPES = frozenset({"uint8", "uint16", "float32", "float64"})
AUTO_TORCH_DTYPES = frozenset({"uint8", "uint16", "float16", "bfloat16", "float32", "float64"})

# numpy dtype (with byte order) of np.asarray(image) for each PIL mode neurep restores exactly.
PIL_MODE_DTYPES = {
    "1": "|b1",
    "L": "|u1",
    "LA": "|u1",
    "RGB": "|u1",
    "RGBA": "|u1",
    "CMYK": "|u1",
    "YCbCr": "|u1",
    "LAB": "|u1",
    "HSV": "|u1",
    "I;16": "<u2",
    "I;16L": "<u2",
    "I;16B": ">u2",
    "I": "=i4",
    "F": "=f4",
}
# dtypes whose full range (not the data's min-max) is mapped to [0, 1]
FULL_RANGE_DTYPES = {"bool": (0, 1), "uint8": (0, 255), "uint16": (0, 65535)}


@dataclass(frozen=True)
class _Pixels:
    """An image read from any input kind, before scaling."""

    hwc: np.ndarray  # (H, W, C), native byte order
    kind: str  # "numpy" | "torch" | "pil" | "file"
    shape: tuple[int, ...]  # shape of the user's object (PIL/file: of its numpy array)
    dtype: str  # numpy dtype name, or torch dtype name for tensors
    mode: str | None = None  # PIL mode (pil and file kinds)
    source: str | None = None  # file name (file kind)


@dataclass(frozen=True)
class ImageConfiguration:
    """What the adapter stores to restore the user's image. JSON-able via ``asdict``."""

    kind: str
    shape: list[int]
    dtype: str
    value_range: list[float | int]
    channels: int
    mode: str | None = None
    source: str | None = None


class ImageAdapter(ModalityAdapter):
    """Grayscale, gray+alpha, RGB or RGBA images; signal ``(1, C, H, W)`` with C in 1..4."""

    name: ClassVar[str] = "image"
    spatial_ndim = 2
    description: ClassVar[str] = (
        "PNG/JPEG/TIFF/WebP files, numpy HxW or HxWxC (C = 1..4) arrays of uint8/uint16/"
        "float32/float64, torch CxHxW or HxW tensors, PIL images"
    )
    extensions: ClassVar[tuple[str, ...]] = IMAGE_EXTENSIONS
    Configuration: ClassVar[type] = ImageConfiguration
    configuration: ImageConfiguration

    @property
    def preset_profile(self) -> str:
        return "image"

    # ---- choosing ------------------------------------------------------------------------

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        if is_path(obj):
            return path_suffix(obj) in IMAGE_EXTENSIONS
        if _is_pil_image(obj):
            return True
        if isinstance(obj, np.ndarray):
            channels_ok = obj.ndim == 2 or (obj.ndim == 3 and 1 <= obj.shape[2] <= MAX_CHANNELS)
            return channels_ok and obj.dtype.name in AUTO_NUMPY_DTYPES
        if isinstance(obj, torch.Tensor):
            channels_ok = obj.ndim == 2 or (obj.ndim == 3 and 1 <= obj.shape[0] <= MAX_CHANNELS)
            return channels_ok and str(obj.dtype).removeprefix("torch.") in AUTO_TORCH_DTYPES
        return False

    @classmethod
    def sniff(cls, path: Path) -> bool:
        head = read_head(path)
        return (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head.startswith(b"\xff\xd8\xff")
            or head[:4] in (b"II*\x00", b"MM\x00*")
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        )

    # ---- there ---------------------------------------------------------------------------

    @classmethod
    def from_object(cls, obj: Any) -> tuple[ImageAdapter, torch.Tensor]:
        pixels = _read_pixels(obj)
        _check_pixels(pixels)
        value_range = _value_range(pixels.hwc)
        configuration = ImageConfiguration(
            kind=pixels.kind,
            shape=list(pixels.shape),
            dtype=pixels.dtype,
            value_range=list(value_range),
            channels=pixels.hwc.shape[2],
            mode=pixels.mode,
            source=pixels.source,
        )
        unit = _scaling.to_unit(pixels.hwc, *value_range)  # (H, W, C)
        signal = torch.from_numpy(np.ascontiguousarray(unit.transpose(2, 0, 1)))[None]
        return cls(configuration), signal  # (1, C, H, W)

    # ---- back ----------------------------------------------------------------------------

    def from_signal(self, signal: torch.Tensor) -> Any:
        config = self.configuration
        height, width = self._height_width
        unit = _scaling.signal_to_numpy(
            signal, (1, config.channels, height, width), type(self).__name__
        )
        working_dtype = _working_dtype(config)
        hwc = _scaling.from_unit(unit[0].transpose(1, 2, 0), *config.value_range, working_dtype)
        if config.kind in ("numpy", "file"):
            return hwc.reshape(config.shape)
        if config.kind == "torch":
            chw = hwc.transpose(2, 0, 1).reshape(config.shape)
            return _scaling.numpy_to_tensor(chw, config.dtype)
        return _to_pil(hwc, config.mode)

    def signal_shape(self) -> tuple[int, ...]:
        return (1, self.configuration.channels, *self._height_width)

    # ---- configuration -------------------------------------------------------------------

    @classmethod
    def check_configuration(cls, configuration: ImageConfiguration) -> None:
        _check_configuration(configuration)

    # ---- measuring -----------------------------------------------------------------------

    @property
    def num_pixels(self) -> int:
        height, width = self._height_width
        return height * width

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.configuration.value_range
        return float(low), float(high)

    def as_array(self, obj: Any) -> np.ndarray:
        """``obj`` as ``(1, C, H, W)`` float64 in original units."""
        hwc = _read_pixels(obj).hwc
        return hwc.transpose(2, 0, 1)[None].astype(np.float64)

    @property
    def _height_width(self) -> tuple[int, int]:
        shape = self.configuration.shape
        if self.configuration.kind == "torch" and len(shape) == 3:
            return shape[1], shape[2]
        return shape[0], shape[1]

    def __repr__(self) -> str:
        config = self.configuration
        return f"ImageAdapter(kind={config.kind!r}, shape={config.shape}, dtype={config.dtype!r})"


# ---- reading ---------------------------------------------------------------------------------


def _is_pil_image(obj: Any) -> bool:
    pil_image = sys.modules.get("PIL.Image")  # not imported -> obj cannot be a PIL image
    return pil_image is not None and isinstance(obj, pil_image.Image)


def _read_pixels(obj: Any) -> _Pixels:
    if is_path(obj):
        return _read_file(Path(os.fspath(obj)))
    if _is_pil_image(obj):
        return _read_pil(obj)
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, layout="hwc", kind="numpy", dtype=obj.dtype.name)
    if isinstance(obj, torch.Tensor):
        values, dtype_name = _scaling.tensor_to_numpy(obj)
        return _from_numpy(values, layout="chw", kind="torch", dtype=dtype_name)
    raise InputError(
        f"cannot read {_scaling.describe(obj)} as an image; pass a file path, a numpy array, "
        "a torch tensor or a PIL image"
    )


def _from_numpy(values: np.ndarray, *, layout: str, kind: str, dtype: str) -> _Pixels:
    """``values`` (HxW, HxWxC or CxHxW) as a ``_Pixels`` with an (H, W, C) array."""
    _scaling.check_numeric(values, f"the {kind} image")
    if values.ndim == 2:
        hwc = values[:, :, None]
    elif values.ndim == 3:
        hwc = values if layout == "hwc" else values.transpose(1, 2, 0)
    else:
        expected = "HxW or HxWxC" if layout == "hwc" else "CxHxW or HxW"
        raise InputError(
            f"an image must be {expected}; got a {kind} value of shape {tuple(values.shape)} "
            "(use modality='array' for other N-d data)"
        )
    native = hwc.astype(hwc.dtype.newbyteorder("="), copy=False)
    return _Pixels(hwc=native, kind=kind, shape=tuple(values.shape), dtype=dtype)


def _read_pil(image: Any) -> _Pixels:
    image = _normalise_pil_mode(image)
    values = np.asarray(image)
    pixels = _from_numpy(values, layout="hwc", kind="pil", dtype=values.dtype.name)
    return _Pixels(pixels.hwc, "pil", pixels.shape, pixels.dtype, mode=image.mode)


def _read_file(path: Path) -> _Pixels:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = _normalise_pil_mode(opened)
            values = np.asarray(image)
            mode = image.mode
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"{path}: cannot be read as an image ({error})") from error
    pixels = _from_numpy(values, layout="hwc", kind="file", dtype=values.dtype.name)
    return _Pixels(pixels.hwc, "file", pixels.shape, pixels.dtype, mode=mode, source=path.name)


def _normalise_pil_mode(image: Any) -> Any:
    """Convert modes neurep does not restore exactly (P, PA, RGBX, ...) to the nearest it does."""
    if image.mode in PIL_MODE_DTYPES:
        return image
    if image.mode == "La":  # premultiplied gray + alpha
        return image.convert("LA")
    has_alpha = image.mode in ("PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _check_pixels(pixels: _Pixels) -> None:
    height, width, channels = pixels.hwc.shape
    if height * width == 0:
        raise InputError(f"the image is empty (shape {pixels.shape}); nothing to fit")
    if height * width == 1:
        raise InputError(f"the image has a single pixel (shape {pixels.shape}); nothing to fit")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(
            f"an image has 1 to {MAX_CHANNELS} channels; got {channels} (shape {pixels.shape}, "
            "channels last for numpy, first for torch); use modality='array' for other data"
        )
    _scaling.check_finite(pixels.hwc, "the image")


def _value_range(hwc: np.ndarray) -> tuple[float | int, float | int]:
    """The range mapped to [0, 1]: the dtype's full range for bool/uint8/uint16, else min-max."""
    return FULL_RANGE_DTYPES.get(hwc.dtype.name) or _scaling.data_min_max(hwc)


# ---- restoring -------------------------------------------------------------------------------


def _working_dtype(config: ImageConfiguration) -> np.dtype:
    if config.kind == "torch":
        return _scaling.numpy_working_dtype(config.dtype)
    return np.dtype(config.dtype)


def _to_pil(hwc: np.ndarray, mode: str | None) -> Any:
    from PIL import Image

    height, width, _ = hwc.shape
    if mode == "1":
        return Image.fromarray(hwc[:, :, 0].astype(bool))
    if mode not in PIL_MODE_DTYPES:
        raise FormatError(f"image configuration names an unsupported PIL mode {mode!r}")
    raw = np.ascontiguousarray(hwc, dtype=np.dtype(PIL_MODE_DTYPES[mode]))
    return Image.frombytes(mode, (width, height), raw.tobytes())


def _check_configuration(config: ImageConfiguration) -> None:
    problems = []
    if config.kind not in ("numpy", "torch", "pil", "file"):
        problems.append(f"unknown kind {config.kind!r}")
    if len(config.shape) not in (2, 3) or min(config.shape, default=0) < 1:
        problems.append(f"bad shape {config.shape}")
    if not 1 <= config.channels <= MAX_CHANNELS:
        problems.append(f"bad channel count {config.channels}")
    if len(config.value_range) != 2 or not all(
        isinstance(bound, int | float) for bound in config.value_range
    ):
        problems.append(f"bad value_range {config.value_range}")
    if config.kind == "pil" and config.mode not in PIL_MODE_DTYPES:
        problems.append(f"unsupported PIL mode {config.mode!r}")
    try:
        _working_dtype(config)
    except (TypeError, ValueError):
        problems.append(f"unknown dtype {config.dtype!r}")
    if problems:
        raise FormatError("image modality configuration is malformed: " + "; ".join(problems))


register(ImageAdapter, priority=10)
