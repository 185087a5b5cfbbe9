"""A collection's items as signals: reading them in one modality and shape, bringing images
to one size, naming them, and holding 8-bit training data as bytes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurep.collection._schema import MAX_NAME_LENGTH
from neurep.errors import InputError
from neurep.fitting.loop import as_unit
from neurep.modalities.base import ModalityAdapter, is_path
from neurep.modalities.registry import resolve


class ItemReader:
    """Reads the user's items as signals of one modality and shape, a batch at a time."""

    def __init__(
        self,
        modality: str | None,
        item_shape: tuple[int, ...] | None,
        size: tuple[int, int] | None = None,
        fit_to: str = "resize",
    ) -> None:
        self.modality = modality
        self.item_shape = item_shape
        self.template: dict[str, Any] | None = None
        self.size = size
        self.fit_to = fit_to

    def sized(self, obj: Any, name: str) -> Any:
        """The item as the collection stores it (resized or cropped if asked)."""
        return obj if self.size is None else sized_image(obj, self.size, self.fit_to, name)

    def read(self, obj: Any, name: str) -> tuple[ModalityAdapter, torch.Tensor]:
        obj = self.last_object = self.sized(obj, name)
        try:
            adapter, signal = resolve(obj, self.modality).read(obj)
        except InputError as error:
            raise InputError(f"item {name!r}: {error}") from None
        if signal.shape[0] != 1:
            raise InputError(
                f"item {name!r}: a collection's items are single items (an image, an array), "
                f"this one has {signal.shape[0]} {adapter.item_label}"
            )
        if self.modality is None:
            self.modality = adapter.name
        shape = tuple(signal.shape[1:])
        if self.item_shape is None:
            self.item_shape = shape
        if shape != self.item_shape:
            raise InputError(
                f"item {name!r}: signal {list(shape)}, the collection's items are "
                f"{list(self.item_shape)} (resize or crop items to one size first)"
            )
        config = adapter.to_config()
        if self.template is None:
            self.template = config
        elif config["name"] != self.template["name"]:
            raise InputError(
                f"item {name!r} is {config['name']}, the collection's items are "
                f"{self.template['name']}"
            )
        return adapter, signal


def sized_image(obj: Any, size: tuple[int, int], fit_to: str, name: str) -> np.ndarray:
    """An image item (path, PIL image or HxW[xC] uint8 array) at ``size`` (width, height):
    ``fit_to="resize"`` scales it (Pillow's bicubic filter), ``"crop"`` cuts the centre
    (InputError if the image is smaller)."""
    from PIL import Image

    try:
        if isinstance(obj, Image.Image):
            image = obj
        elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.ndim in (2, 3):
            image = Image.fromarray(obj[..., 0] if obj.ndim == 3 and obj.shape[2] == 1 else obj)
        elif is_path(obj):
            image = Image.open(os.fspath(obj))
            image.load()
        else:
            raise InputError("size= resizes images only: paths, PIL images or uint8 HxW(xC) arrays")
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"item {name!r}: cannot read it as an image to resize: {error}") from None
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    width, height = size
    if fit_to == "resize":
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    elif fit_to == "crop":
        if image.width < width or image.height < height:
            raise InputError(
                f"item {name!r}: {image.width}x{image.height}, smaller than the crop "
                f"{width}x{height}"
            )
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))
    else:
        raise InputError(f"fit_to must be 'resize' or 'crop', not {fit_to!r}")
    return np.asarray(image)


def as_bytes_if_exact(signal: torch.Tensor) -> torch.Tensor:
    """A float signal of 8-bit data (values k / 255) as uint8, which the fit loop reads as
    value / 255 to the same float32 bits: the training items take a quarter of the memory."""
    if signal.dtype != torch.float32:
        return signal
    codes = (signal * 255).round_().clamp_(0, 255).to(torch.uint8)
    return codes if torch.equal(as_unit(codes), signal) else signal


def default_names(items: Sequence[Any]) -> list[str]:
    """Paths: relative to their common folder (POSIX separators); other objects: their
    position as ``item000012``."""
    paths = [Path(os.fspath(item)).resolve() for item in items if is_path(item)]
    root = Path(os.path.commonpath([p.parent for p in paths])) if paths else None
    names = []
    for position, item in enumerate(items):
        if is_path(item):
            names.append(Path(os.fspath(item)).resolve().relative_to(root).as_posix())
        else:
            names.append(f"item{position:06d}")
    return names


def checked_names(names: Sequence[str], count: int, taken: set[str]) -> list[str]:
    names = [str(name) for name in names]
    if len(names) != count:
        raise InputError(f"{count} items but {len(names)} names")
    seen = set(taken)
    for name in names:
        if not name or len(name) > MAX_NAME_LENGTH or any(c in name for c in "\n\r\0"):
            raise InputError(
                f"item name {name!r:.80}: 1 to {MAX_NAME_LENGTH} characters, no newlines"
            )
        if name in seen:
            raise InputError(f"item name {name!r} is given twice (or is already in the collection)")
        seen.add(name)
    return names
