"""The video modality's stored configuration and its checks, and the ``frames=`` and
``size=`` read options (used by :mod:`neurep.modalities.video` and the CLI).

A configuration comes back from a file that may be hostile: :func:`check_configuration`
raises :class:`~neurep.errors.FormatError` for anything a restore could not use.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from neurep.errors import FormatError, InputError

KINDS = ("file", "folder", "numpy", "torch")
CHANNELS = (1, 3)
NUMPY_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
TORCH_DTYPES = (*NUMPY_DTYPES, "bfloat16")
FULL_RANGE_DTYPES = {"uint8": (0, 255), "uint16": (0, 65535)}
DEFAULT_FPS = "25/1"
MAX_SIDE = 1 << 15  # pixels on a side
MAX_FRAMES = 1 << 24
MAX_NAME = 4096  # characters of a stored source / codec / pixel format name
MAX_STREAMS = 1024
FPS_PATTERN = re.compile(r"[1-9][0-9]{0,9}/[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class VideoConfiguration:
    """What the adapter stores to restore the user's clip. JSON-able via ``asdict``."""

    kind: str  # "file" | "folder" | "numpy" | "torch"
    shape: list[int]  # of what decode returns: [T, H, W, C], torch [T, C, H, W]
    dtype: str  # numpy dtype name, or torch dtype name for tensors; files/folders "uint8"
    value_range: list[float | int]  # what the signal's 0 and 1 stand for
    channels: int  # 1 or 3
    frames: int  # T
    fps: str  # exact rational "30000/1001"
    source: str | None  # file or folder name (not its path)
    codec: str | None  # files: FFmpeg's decoder name ("h264")
    pixel_format: str | None  # files: the stream's pixel format ("yuv420p")
    frame_range: list[int]  # [start, stop) of the source frames read
    size: list[int] | None  # [width, height] asked for, or None
    ignored_streams: list[str]  # kinds of the file's other streams ("audio", ...)


# ---- options -----------------------------------------------------------------------------------


def parse_frame_range(frames: Any) -> tuple[int, int | None]:
    """``frames=`` as ``(start, stop)``: from None (all), ``(start, stop)``, ``slice`` or
    ``"start:stop"`` (either side may be empty). InputError for negatives, steps, a stop
    not after start, or anything else."""
    if frames is None:
        return 0, None
    if isinstance(frames, str):
        match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", frames)
        if match is None:
            raise InputError(
                f"frames={frames!r} is not 'start:stop' (e.g. '0:120', '10:', ':50'; "
                "no negative indices)"
            )
        start, stop = (int(text) if text else None for text in match.groups())
    elif isinstance(frames, slice):
        if frames.step not in (None, 1):
            raise InputError(f"frames={frames!r}: a step is not supported (every frame is kept)")
        start, stop = frames.start, frames.stop
    elif isinstance(frames, tuple | list) and len(frames) == 2:
        start, stop = frames
    else:
        raise InputError(
            f"frames must be (start, stop), slice(start, stop) or 'start:stop'; got {frames!r}"
        )
    start, stop = _frame_index(start, frames), _frame_index(stop, frames)
    start = start or 0
    if stop is not None and stop <= start:
        raise InputError(f"frames={frames!r} selects no frames (stop must exceed start)")
    return start, stop


def _frame_index(value: Any, frames: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"frames={frames!r}: frame indices are integers, not booleans")
    try:
        index = operator.index(value)
    except TypeError:
        raise InputError(f"frames={frames!r}: frame indices must be integers") from None
    if index < 0:
        raise InputError(f"frames={frames!r}: negative frame indices are not allowed")
    return index


def parse_size(size: Any) -> tuple[int, int] | None:
    """``size=`` as ``(width, height)``: from None, ``(w, h)`` or ``"640x360"``."""
    if size is None:
        return None
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if match is None:
            raise InputError(f"size={size!r} is not 'WIDTHxHEIGHT' (e.g. '640x360')")
        sides: Any = tuple(int(text) for text in match.groups())
    elif isinstance(size, tuple | list) and len(size) == 2:
        sides = size
    else:
        raise InputError(f"size must be (width, height) or 'WIDTHxHEIGHT'; got {size!r}")
    try:
        if any(isinstance(side, bool) for side in sides):
            raise TypeError("booleans")
        width, height = (operator.index(side) for side in sides)
    except TypeError:
        raise InputError(f"size={size!r}: width and height must be integers") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height < 2:
        raise InputError(
            f"size={size!r}: width and height must be 1 to {MAX_SIDE} (and not one pixel)"
        )
    return width, height


# ---- configuration -----------------------------------------------------------------------------


def check_configuration(config: VideoConfiguration) -> None:
    problems: list[str] = []
    if config.kind not in KINDS:
        problems.append(f"unknown kind {config.kind!r}")
    allowed = {"numpy": NUMPY_DTYPES, "torch": TORCH_DTYPES}.get(config.kind, ("uint8",))
    if config.dtype not in allowed:
        problems.append(f"dtype {config.dtype!r} is not one of {', '.join(allowed)}")
    if config.channels not in CHANNELS or (config.kind == "file" and config.channels != 3):
        problems.append(f"bad channel count {config.channels}")
    problems += _shape_problems(config)
    problems += _value_range_problems(config)
    if not isinstance(config.fps, str) or FPS_PATTERN.fullmatch(config.fps) is None:
        problems.append(f"fps {config.fps!r} is not a rational 'numerator/denominator'")
    for name in ("source", "codec", "pixel_format"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_NAME):
            problems.append(f"bad {name} {value!r}")
    if (
        len(config.frame_range) != 2
        or not 0 <= config.frame_range[0] < config.frame_range[1]
        or config.frame_range[1] - config.frame_range[0] != config.frames
    ):
        problems.append(f"frame_range {config.frame_range} does not hold {config.frames} frames")
    if not (
        len(config.ignored_streams) <= MAX_STREAMS
        and all(isinstance(kind, str) and len(kind) <= MAX_NAME for kind in config.ignored_streams)
    ):
        problems.append("bad ignored_streams")
    if problems:
        raise FormatError("video modality configuration is malformed: " + "; ".join(problems))


def _shape_problems(config: VideoConfiguration) -> list[str]:
    shape = config.shape
    if len(shape) != 4 or min(shape) < 1:
        return [f"bad shape {shape}"]
    frames, *rest = shape
    channels, height, width = rest if config.kind == "torch" else (rest[2], rest[0], rest[1])
    problems = []
    if frames > MAX_FRAMES or max(height, width) > MAX_SIDE:
        problems.append(f"shape {shape} is too large")
    if channels != config.channels:
        problems.append(f"shape {shape} does not have {config.channels} channels")
    if frames != config.frames:
        problems.append(f"shape {shape} does not have {config.frames} frames")
    size = config.size
    if size is not None and not (
        isinstance(size, list) and size == [width, height] and all(type(s) is int for s in size)
    ):
        problems.append(f"size {size!r} is not the shape's [width, height]")
    return problems


def _value_range_problems(config: VideoConfiguration) -> list[str]:
    bounds = config.value_range
    if len(bounds) != 2 or not all(_is_finite_number(bound) for bound in bounds):
        return [f"bad value_range {bounds}"]
    full = FULL_RANGE_DTYPES.get(config.dtype)
    if full is not None and tuple(bounds) != full:
        return [f"value_range {bounds} is not {list(full)} for {config.dtype}"]
    if bounds[0] > bounds[1]:
        return [f"value_range {bounds} is reversed"]
    return []


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= 2**53 if isinstance(value, int) else math.isfinite(value)
