"""Reading a clip for the video modality, from any input kind, into its signal.

Files and folders are decoded a frame at a time (:mod:`._video_io`) into one uint8
``(T, H, W, C)`` buffer whose ``(T, C, H, W)`` view is the signal; uint8 arrays are used in
place; other dtypes become float32 a few frames at a time (:func:`frame_chunks`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurep.errors import InputError
from neurep.modalities import _scaling, _video_io
from neurep.modalities._video_config import (
    CHANNELS,
    DEFAULT_FPS,
    FULL_RANGE_DTYPES,
    NUMPY_DTYPES,
    TORCH_DTYPES,
)
from neurep.modalities.base import is_path

CHUNK_SAMPLES = 1 << 22  # samples converted at a time (32 MiB as float64)


@dataclass(frozen=True)
class Read:
    """A clip read from any input kind: the signal and what the configuration records."""

    signal: torch.Tensor  # (T, C, H, W) uint8 (value / 255) or float32 in [0, 1]
    kind: str
    shape: list[int]
    dtype: str
    value_range: tuple[float | int, float | int]
    start: int
    fps: str = DEFAULT_FPS
    source: str | None = None
    codec: str | None = None
    pixel_format: str | None = None
    ignored_streams: tuple[str, ...] = ()
    buffer: np.ndarray | None = None  # files and folders: the (T, H, W, C) uint8 frames


def read_clip(obj: Any, start: int, stop: int | None, size: tuple[int, int] | None) -> Read:
    if is_path(obj):
        return read_path(Path(os.fspath(obj)), start, stop, size)
    if isinstance(obj, np.ndarray):
        _check_array(obj.shape, obj.dtype.name, "numpy", start, stop)
        return _read_array(
            obj[start:stop].transpose(0, 3, 1, 2), "numpy", obj.dtype.name, start, size
        )
    if isinstance(obj, torch.Tensor):
        values, dtype_name = _scaling.tensor_to_numpy(obj)  # (T, C, H, W), a view on the CPU
        _check_array(values.shape, dtype_name, "torch", start, stop)
        return _read_array(values[start:stop], "torch", dtype_name, start, size)
    raise InputError(
        f"cannot read {_scaling.describe(obj)} as a video; pass a video file, a folder of "
        "frames, a numpy TxHxWxC array or a torch TxCxHxW tensor"
    )


def read_path(path: Path, start: int, stop: int | None, size: tuple[int, int] | None) -> Read:
    """A video file or a folder of frames, read as one uint8 buffer."""
    if path.is_dir():
        clip, kind = _video_io.read_frame_folder(path, start=start, stop=stop, size=size), "folder"
    elif path.is_file():
        clip, kind = _video_io.read_video(path, start=start, stop=stop, size=size), "file"
    else:
        raise InputError(f"{path}: no such file or folder")
    frames = clip.frames  # (T, H, W, C) uint8
    _check_frame_size(frames.shape[1:3], path)
    return Read(
        signal=torch.from_numpy(frames).permute(0, 3, 1, 2),  # (T, C, H, W) view
        kind=kind,
        shape=list(frames.shape),
        dtype="uint8",
        value_range=FULL_RANGE_DTYPES["uint8"],
        start=start,
        fps=_video_io.rate_text(clip.fps),
        source=path.name,
        codec=clip.codec,
        pixel_format=clip.pixel_format,
        ignored_streams=clip.ignored_streams,
        buffer=frames,
    )


def _check_array(
    shape: tuple[int, ...], dtype: str, kind: str, start: int, stop: int | None
) -> None:
    """InputError unless an array of ``shape`` and ``dtype`` is a usable clip."""
    layout = "TxHxWxC" if kind == "numpy" else "TxCxHxW"
    if len(shape) != 4:
        raise InputError(
            f"a {kind} video is {layout}; got shape {tuple(shape)} (use modality='image' or "
            "'array' for 2-D and 3-D data)"
        )
    allowed = NUMPY_DTYPES if kind == "numpy" else TORCH_DTYPES
    if dtype not in allowed:
        raise InputError(
            f"the {kind} video has dtype {dtype}; video takes {', '.join(allowed)} "
            "(convert it, e.g. to float32)"
        )
    channels = shape[3] if kind == "numpy" else shape[1]
    if channels not in CHANNELS:
        raise InputError(
            f"the {kind} video {layout} has {channels} channels; {_channel_hint(shape, kind)}"
        )
    if shape[0] == 0:
        raise InputError(f"the {kind} video has no frames (shape {tuple(shape)}); nothing to fit")
    if len(range(shape[0])[start:stop]) == 0:
        raise InputError(
            f"frames {start}:{'' if stop is None else stop} select none of the {kind} "
            f"video's {shape[0]} frames"
        )
    _check_frame_size(shape[1:3] if kind == "numpy" else shape[2:4], f"the {kind} video")


def _channel_hint(shape: tuple[int, ...], kind: str) -> str:
    channels = shape[3] if kind == "numpy" else shape[1]
    text = "video frames have 1 (gray) or 3 (RGB) channels"
    if channels == 4:
        text += "; drop alpha with " + ("arr[..., :3]" if kind == "numpy" else "t[:, :3]")
    if kind == "numpy" and shape[1] in CHANNELS:
        text += "; numpy clips are channels-last: for TxCxHxW use arr.transpose(0, 2, 3, 1)"
    if kind == "torch" and shape[3] in CHANNELS:
        text += "; torch clips are channels-first: for TxHxWxC use t.permute(0, 3, 1, 2)"
    return text


def _check_frame_size(height_width: tuple[int, ...], what: Any) -> None:
    height, width = height_width
    if height * width < 2:
        raise InputError(f"{what}: frames of {width}x{height} pixels; nothing to fit")


def _read_array(
    tchw: np.ndarray, kind: str, dtype: str, start: int, size: tuple[int, int] | None
) -> Read:
    """The selected frames ``(T, C, H, W)`` of a numpy or torch clip as a signal."""
    _scaling.check_finite(tchw, f"the {kind} video")
    if dtype == "uint8":
        value_range = FULL_RANGE_DTYPES["uint8"]
        signal = _uint8_signal(tchw) if size is None else _resized_uint8(tchw, size)
    else:
        value_range = FULL_RANGE_DTYPES.get(dtype) or _scaling.data_min_max(tchw)
        signal = _unit_signal(tchw, value_range, size)
    frames, channels, height, width = signal.shape
    shape = [frames, height, width, channels] if kind == "numpy" else list(signal.shape)
    return Read(signal, kind, shape, dtype, value_range, start)


def _uint8_signal(tchw: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, C, H, W)`` as a tensor sharing its memory (copied only if torch cannot)."""
    if not tchw.flags.writeable or any(stride < 0 for stride in tchw.strides):
        tchw = tchw.copy()
    return torch.from_numpy(tchw)


def _resized_uint8(tchw: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(T, C, H, W)`` resized to ``size = (w, h)``: a ``(T, C, h, w)`` uint8 signal."""
    frames, channels = tchw.shape[:2]
    width, height = size
    out = torch.empty((frames, height, width, channels), dtype=torch.uint8)
    out = out.permute(0, 3, 1, 2)  # (T, C, h, w) stored channels-last, like files
    for begin, end in frame_chunks(tchw.shape):
        chunk = torch.from_numpy(np.ascontiguousarray(tchw[begin:end])).float()
        out[begin:end] = _resize(chunk, height, width).round().clamp(0, 255).to(torch.uint8)
    return out


def _unit_signal(
    tchw: np.ndarray, value_range: tuple[float, float], size: tuple[int, int] | None
) -> torch.Tensor:
    """``(T, C, H, W)`` values mapped from ``value_range`` to a float32 ``[0, 1]`` signal."""
    frames, channels, height, width = tchw.shape
    if size is not None:
        width, height = size
    low, high = float(value_range[0]), float(value_range[1])
    out = torch.empty((frames, channels, height, width), dtype=torch.float32)
    for begin, end in frame_chunks(tchw.shape):
        chunk = torch.from_numpy(tchw[begin:end].astype(np.float64))  # (b, C, H, W)
        unit = ((chunk - low) / (high - low)).clamp(0, 1) if high > low else chunk * 0
        out[begin:end] = _resize(unit, height, width).clamp(0, 1)
    return out


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float ``(b, C, H, W)`` resized to ``(b, C, height, width)`` (antialiased bilinear)."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    return F.interpolate(
        frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


def frame_chunks(
    tchw_shape: tuple[int, ...], samples: int = CHUNK_SAMPLES
) -> list[tuple[int, int]]:
    """``[(begin, end), ...]`` frame ranges of at most ``samples`` samples (or one frame)."""
    frames = tchw_shape[0]
    step = max(1, samples // max(1, math.prod(tchw_shape[1:])))
    return [(begin, min(begin + step, frames)) for begin in range(0, frames, step)]


def path_key(obj: Any) -> str:
    return os.fspath(Path(os.fspath(obj)).resolve())
