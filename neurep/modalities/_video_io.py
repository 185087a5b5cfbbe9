"""Reading and writing video for :mod:`neurep.modalities.video`: PyAV files, frame folders.

Readers fill one uint8 ``(T, H, W, C)`` buffer a frame at a time, so a clip never exists in
memory as anything bigger than its 8-bit pixels (plus one decoded frame). Writers are atomic:
they write a temporary file (or folder) beside the target and rename it into place, so a
failure leaves nothing behind.

PyAV (``import av``) is imported inside the functions that need it: importing this module
works without it, and using a file raises :class:`~neurep.errors.MissingDependencyError`.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from neurep.errors import InputError, MissingDependencyError

__all__ = [
    "FRAME_EXTENSIONS",
    "WRITE_FORMATS",
    "Clip",
    "frame_files",
    "import_av",
    "natural_key",
    "parse_rate",
    "rate_text",
    "read_frame_folder",
    "read_video",
    "write_frames",
    "write_video",
]

#: Frame images a folder may hold (any other file in it is ignored).
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
#: Output suffix -> (FFmpeg container format, video encoder).
WRITE_FORMATS = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".avi": ("avi", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}
#: Encoder settings that are visually lossless at any size (constant quality, no bitrate cap).
ENCODER_OPTIONS = {
    "libx264": {"crf": "12", "preset": "medium"},
    "libvpx-vp9": {"crf": "15", "b": "0", "row-mt": "1"},
}
DEFAULT_FPS = Fraction(25)
# Pillow modes read as one channel; other 8-bit modes become RGB (alpha is dropped).
GRAY_MODES = frozenset({"1", "L", "LA", "La"})
# Pillow modes with more than 8 bits a sample, which frame folders do not take.
DEEP_MODES = ("I", "F")
# Initial buffer size when a file does not say how many frames it has.
UNKNOWN_FRAME_COUNT = 64
# The first allocation never exceeds this many bytes (the buffer grows beyond it if needed).
MAX_INITIAL_BYTES = 1 << 30


@dataclass(frozen=True)
class Clip:
    """Frames read from a file or folder, with what the configuration records about them."""

    frames: np.ndarray  # (T, H, W, C) uint8, C = 3 (files) or 1 | 3 (folders)
    fps: Fraction
    codec: str | None = None
    pixel_format: str | None = None
    ignored_streams: tuple[str, ...] = ()


def import_av() -> Any:
    """The ``av`` module, or MissingDependencyError naming the extra that installs it."""
    try:
        import av
    except ImportError as error:
        raise MissingDependencyError(
            "reading and writing video files needs PyAV: pip install 'neurep[video]'"
        ) from error
    return av


def rate_text(rate: Fraction) -> str:
    """An exact rational as ``"30000/1001"`` (``"25/1"`` for whole numbers)."""
    return f"{rate.numerator}/{rate.denominator}"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``."""
    # re.split with a group alternates text and digits, so the types line up position-wise.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


# ---- reading files -----------------------------------------------------------------------------


def read_video(
    path: Path,
    *,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
) -> Clip:
    """Frames ``start:stop`` of the first video stream of ``path`` as RGB, 8 bits a sample.

    Every frame goes through FFmpeg's converter to ``rgb24`` (deeper pixel formats arrive as
    8-bit, alpha is dropped), resized to ``size = (width, height)`` when given, else to the
    first frame's size (streams that change size midway are scaled to it). Frames before
    ``start`` are decoded and discarded; decoding stops at ``stop``.

    Raises InputError for a file FFmpeg cannot read, one without a video stream, a decoding
    error, or no frames in the range; MissingDependencyError without PyAV. A file cut
    cleanly between frames reads as a shorter clip: the frame count a file declares is not
    enforced, since edit lists make it differ from the decoded count in valid files.
    """
    av = import_av()
    try:
        container = av.open(os.fspath(path), mode="r")
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"{path}: cannot be read as a video ({error})") from error
    with container:
        stream = _first_video_stream(container, path)
        ignored = tuple(other.type for other in container.streams if other.index != stream.index)
        codec = stream.codec_context.name
        pixel_format = stream.codec_context.pix_fmt
        fps = _stream_rate(stream)
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is the slow part
        expected = _expected_frames(container, stream, fps, start, stop)
        frames = _decode_frames(av, container, stream, path, start, stop, size, expected)
    if len(frames) == 0:
        raise InputError(f"{path}: {_no_frames_reason(start, stop)}")
    return Clip(frames, fps, codec, pixel_format, ignored)


def _first_video_stream(container: Any, path: Path) -> Any:
    if container.streams.video:
        return container.streams.video[0]
    kinds = sorted({stream.type for stream in container.streams})
    found = f"only {', '.join(kinds)} stream(s)" if kinds else "no streams at all"
    raise InputError(
        f"{path}: has no video stream (FFmpeg finds {found}); is it an audio file, "
        "or damaged or truncated?"
    )


def _stream_rate(stream: Any) -> Fraction:
    """The stream's frame rate as an exact fraction; DEFAULT_FPS when the file has none."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return DEFAULT_FPS


def _expected_frames(
    container: Any, stream: Any, fps: Fraction, start: int, stop: int | None
) -> int:
    """How many frames to allocate room for at first (a guess: the buffer grows if wrong):
    the stream's frame count, else its duration (or the file's, mkv/webm) times the rate."""
    declared = stream.frames
    if not declared and stream.duration and stream.time_base:
        declared = round(float(stream.duration * stream.time_base * fps))
    if not declared and container.duration:  # in microseconds
        declared = round(container.duration * float(fps) / 1_000_000)
    if not declared:
        declared = start + UNKNOWN_FRAME_COUNT
    if stop is not None:
        declared = min(declared, stop)
    return max(1, declared - start)


def _decode_frames(
    av: Any,
    container: Any,
    stream: Any,
    path: Path,
    start: int,
    stop: int | None,
    size: tuple[int, int] | None,
    expected: int,
) -> np.ndarray:
    """Decode frames ``start:stop`` into a uint8 ``(T, H, W, 3)`` array."""
    buffer: _FrameBuffer | None = None
    target = size  # (width, height) every frame is converted to; the first frame's if None
    index = -1
    try:
        for index, frame in enumerate(container.decode(stream)):
            if stop is not None and index >= stop:
                break
            if index < start:
                continue
            target = target or (frame.width, frame.height)
            rgb = _to_rgb(frame, *target, path)  # (H, W, 3)
            if buffer is None:
                buffer = _FrameBuffer(rgb.shape, expected)
            buffer.append(rgb)
    except av.FFmpegError as error:
        raise InputError(
            f"{path}: the video is damaged or truncated (decoding failed after "
            f"{index + 1} frame(s): {error})"
        ) from error
    return buffer.array() if buffer else np.empty((0, 0, 0, 3), np.uint8)


def _to_rgb(frame: Any, width: int, height: int, path: Path) -> np.ndarray:
    """A decoded frame as ``(height, width, 3)`` uint8 RGB."""
    try:
        return frame.to_ndarray(format="rgb24", width=width, height=height)
    except ValueError as error:  # FFmpeg cannot convert this pixel format
        raise InputError(
            f"{path}: unsupported pixel format {frame.format.name!r} ({error})"
        ) from error


def _no_frames_reason(start: int, stop: int | None) -> str:
    if start == 0 and stop is None:
        return "the video has no frames; nothing to fit"
    return f"frames {start}:{'' if stop is None else stop} select no frames of this video"


class _FrameBuffer:
    """Frames appended one at a time to one uint8 ``(capacity, H, W, C)`` array.

    The array starts at the expected frame count and grows by half when full. Room allocated
    but never written costs no memory on systems that commit pages when touched (Linux), so
    :meth:`array` returns a view rather than a trimmed copy.
    """

    def __init__(self, frame_shape: tuple[int, ...], expected: int) -> None:
        frame_bytes = int(np.prod(frame_shape))
        capacity = max(1, min(expected, MAX_INITIAL_BYTES // max(frame_bytes, 1)))
        self._data = np.empty((capacity, *frame_shape), np.uint8)
        self._count = 0

    def append(self, frame: np.ndarray) -> None:
        if self._count == len(self._data):
            grown = np.empty((len(self._data) * 3 // 2 + 1, *self._data.shape[1:]), np.uint8)
            grown[: self._count] = self._data
            self._data = grown
        self._data[self._count] = frame
        self._count += 1

    def array(self) -> np.ndarray:
        """The frames written so far: ``(T, H, W, C)`` uint8."""
        return self._data[: self._count]


# ---- reading folders ---------------------------------------------------------------------------


def frame_files(folder: Path) -> list[Path]:
    """The frame images in ``folder`` (by suffix, not hidden), in natural order of name."""
    files = [
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in FRAME_EXTENSIONS
        and not entry.name.startswith(".")
        and entry.is_file()
    ]
    return sorted(files, key=lambda entry: natural_key(entry.name))


def read_frame_folder(
    folder: Path,
    *,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
) -> Clip:
    """Images ``start:stop`` (natural order) of ``folder`` as one uint8 ``(T, H, W, C)`` clip.

    C is 1 when every selected frame is grayscale (Pillow modes 1, L, LA), else 3 (RGB; alpha
    is dropped). Frames must all have the first one's size unless ``size = (width, height)``
    is given, which resizes each. Files of other suffixes are ignored. 16-bit and float
    frames are refused (pass them as a uint16 or float numpy array instead).
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    paths = frame_files(folder)
    if not paths:
        raise InputError(
            f"{folder}: holds no frame images ({', '.join(FRAME_EXTENSIONS)}); nothing to fit"
        )
    selected = paths[start:stop]
    if not selected:
        raise InputError(f"{folder}: {_no_frames_reason(start, stop)} ({len(paths)} frames)")
    headers = [_frame_header(path) for path in selected]  # [(width, height), mode]
    if size is None:
        _check_same_size(selected, headers)
    width, height = size or headers[0][0]
    channels = 1 if all(mode in GRAY_MODES for _, mode in headers) else 3
    frames = np.empty((len(selected), height, width, channels), np.uint8)
    for index, path in enumerate(selected):
        frames[index] = _load_frame(path, channels, (width, height))
    return Clip(frames, DEFAULT_FPS)


def _open_image(path: Path) -> Any:
    from PIL import Image

    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot be read as a frame image ({error})") from error


def _frame_header(path: Path) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of a frame image, read from its header only."""
    with _open_image(path) as image:
        if image.mode.startswith(DEEP_MODES):
            raise InputError(
                f"{path}: frames of Pillow mode {image.mode!r} (16-bit or float) are not read "
                "from folders; pass the frames as a numpy TxHxWxC uint16 or float array"
            )
        return image.size, image.mode


def _check_same_size(paths: list[Path], headers: list[tuple[tuple[int, int], str]]) -> None:
    first_size = headers[0][0]
    for path, (frame_size, _) in zip(paths, headers, strict=True):
        if frame_size != first_size:
            raise InputError(
                f"{path}: is {frame_size[0]}x{frame_size[1]} but {paths[0].name} is "
                f"{first_size[0]}x{first_size[1]}; frames of a folder must share one size "
                "(or pass size=(width, height) to resize them all)"
            )


def _load_frame(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One frame image as ``(H, W, channels)`` uint8, resized to ``size`` if it differs."""
    from PIL import Image

    with _open_image(path) as image:
        try:
            converted = image.convert("L" if channels == 1 else "RGB")
            if converted.size != size:
                converted = converted.resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(converted)
        except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
            raise InputError(f"{path}: cannot be read as a frame image ({error})") from error
    return pixels.reshape(size[1], size[0], channels)


# ---- writing -----------------------------------------------------------------------------------


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: str | Fraction) -> None:
    """Encode ``frames`` (T, H, W, C) uint8, C = 1 or 3, as a video file, atomically.

    The container and encoder follow the suffix (:data:`WRITE_FORMATS`: H.264 in mp4, m4v,
    mov, mkv and avi; VP9 in webm), at a visually lossless constant quality. Even sizes are
    stored as yuv420p, odd ones as yuv444p (4:2:0 needs even sides), so the size is kept.
    ``fps`` (``"30000/1001"`` or a Fraction) becomes the stream's exact frame rate.

    Raises ValueError for bad frames, fps or suffix; OSError if the folder is not writable.
    """
    thwc = _check_frames(frames)
    rate = parse_rate(fps)
    target = Path(os.fspath(path))
    suffix = target.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise ValueError(
            f"{target}: cannot choose a video format for suffix {suffix!r}; "
            f"use one of {', '.join(WRITE_FORMATS)}"
        )
    av = import_av()
    container_format, codec = WRITE_FORMATS[suffix]
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        _encode(av, thwc, temporary, container_format, codec, rate)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _encode(
    av: Any, thwc: np.ndarray, path: Path, container_format: str, codec: str, rate: Fraction
) -> None:
    _, height, width, channels = thwc.shape
    with av.open(os.fspath(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.options = dict(ENCODER_OPTIONS[codec])
        frame_format = "rgb24" if channels == 3 else "gray"
        for index, pixels in enumerate(thwc):
            plane = pixels if channels == 3 else pixels[:, :, 0]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format=frame_format)
            frame.pts, frame.time_base = index, 1 / rate  # one tick of 1/fps per frame
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush the encoder's delayed frames


def write_frames(
    frames: np.ndarray, folder: str | os.PathLike, *, overwrite: bool = False
) -> list[Path]:
    """Write ``frames`` (T, H, W, C) uint8, C = 1 or 3, as ``frame_00000.png``... in ``folder``.

    The PNGs are written to a temporary folder beside ``folder`` and moved in only when all
    are written, so a failure leaves no frames behind. ``folder`` (and its parents) is
    created if missing. An existing ``folder`` that holds files is refused unless
    ``overwrite``; then its ``frame_<digits>.png`` files are replaced (stale ones of a longer
    clip removed) and other files kept. Returns the paths written, in frame order.
    """
    from PIL import Image

    thwc = _check_frames(frames)
    target = Path(os.fspath(folder))
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target}: folder is not empty (pass overwrite=True to replace)")
    digits = max(5, len(str(len(thwc) - 1)))
    names = [f"frame_{index:0{digits}d}.png" for index in range(len(thwc))]
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    temporary.mkdir()
    try:
        for pixels, name in zip(thwc, names, strict=True):
            plane = pixels if pixels.shape[2] == 3 else pixels[:, :, 0]
            Image.fromarray(np.ascontiguousarray(plane)).save(temporary / name, format="PNG")
        _move_frames_in(temporary, target, names)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return [target / name for name in names]


def _move_frames_in(temporary: Path, target: Path, names: list[str]) -> None:
    """Put the written frames at ``target``: rename the folder, or each file into it."""
    if not target.exists():
        os.replace(temporary, target)
        return
    keep = set(names)
    stale = [
        entry
        for entry in target.iterdir()
        if re.fullmatch(r"frame_\d+\.png", entry.name) and entry.name not in keep
    ]
    for name in names:
        os.replace(temporary / name, target / name)
    for entry in stale:
        entry.unlink()
    temporary.rmdir()


def parse_rate(fps: str | Fraction | int) -> Fraction:
    """``"30000/1001"``, ``"25"`` or a Fraction as a positive Fraction (ValueError otherwise)."""
    try:
        rate = Fraction(fps) if not isinstance(fps, float) else Fraction(str(fps))
    except (TypeError, ValueError, ZeroDivisionError) as error:
        raise ValueError(
            f"fps must be a positive rational like '30000/1001', got {fps!r}"
        ) from error
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def _check_frames(frames: Any) -> np.ndarray:
    """``frames`` checked to be a (T, H, W, C) uint8 array with T >= 1 and C in (1, 3)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(
            f"frames must be a numpy (T, H, W, C) uint8 array, got {_describe(frames)}"
        )
    if len(frames) == 0 or frames.shape[3] not in (1, 3) or min(frames.shape[1:3]) < 1:
        raise ValueError(f"frames must be (T>=1, H, W, C in 1|3), got shape {frames.shape}")
    return frames


def _describe(obj: Any) -> str:
    shape, dtype = getattr(obj, "shape", None), getattr(obj, "dtype", None)
    return type(obj).__name__ + (f" of shape {tuple(shape)} and dtype {dtype}" if shape else "")
