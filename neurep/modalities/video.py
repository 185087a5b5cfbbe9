"""Video: files, frame folders, numpy and torch clips <-> signal ``(T, C, H, W)``, one item a frame.

Inputs and what :meth:`VideoAdapter.from_signal` gives back for each:

=================================  ==============================================================
input                              decoded
=================================  ==============================================================
video file (mp4, mov, mkv, avi,    numpy ``TxHxWx3`` uint8 RGB. The first video stream is read
webm, m4v, ... anything FFmpeg     through PyAV (``pip install 'neurep[video]'``); audio,
reads, through PyAV)               subtitle and data streams are ignored and their kinds recorded
                                   (``ignored_streams``). Every pixel format is converted to 8-bit
                                   RGB by FFmpeg: 10-bit video arrives as 8-bit, alpha is dropped.
folder of frame images (PNG,       numpy ``TxHxWxC`` uint8, C = 1 if every frame is grayscale,
JPEG, TIFF, WebP, BMP), only with  else 3. Frames in natural order of name (``frame2`` before
``modality="video"``               ``frame10``); other files are ignored; all frames must share
                                   one size (unless ``size=`` is given); 16-bit and float frame
                                   images are refused (pass such frames as an array).
numpy ``TxHxWxC``, C = 1 or 3      numpy array, same shape (see ``frames``/``size``) and dtype
torch ``TxCxHxW``, C = 1 or 3      CPU torch tensor, same shape and dtype
=================================  ==============================================================

Array dtypes: uint8 and uint16 (scaled by 255 and 65535), float16/32/64 (and bfloat16
tensors), scaled by the clip's own min-max, which the configuration records. Decoding clips
to that range and rounds integers, so an untouched round trip is exact for 8- and 16-bit.

Any 4-D numpy array or torch tensor is taken as a video (the array modality takes 1-D to 3-D
only). To read a 4-D array otherwise, pass a slice of it: ``arr[0]`` (one frame) is an image,
``arr[..., 0]`` a 3-D volume (``modality="array"``).

Read options (``neurep.fit(clip, frames=..., size=...)``):

* ``frames``: the source frames to keep, ``(start, stop)``, ``slice(start, stop)`` or
  ``"start:stop"``, with Python's slice meaning (stop excluded, either may be omitted; no
  negatives). The frames actually read are recorded as ``frame_range``. A file is decoded from
  its start (frames before ``start`` are decoded and dropped) up to ``stop``.
* ``size``: ``(width, height)`` or ``"640x360"``: every frame is resized when read (FFmpeg's
  scaler for files, Pillow's bilinear filter for folders, torch's antialiased bilinear
  interpolation for arrays). What was asked is recorded as ``size``.

Frame rate: files record the stream's average (else guessed) rate as an exact rational,
``"30000/1001"``; timestamps are not kept (frames are taken as evenly spaced). Folders,
arrays and files without a rate record the default ``"25/1"``.

Memory: files and folders are decoded a frame at a time into one uint8 ``(T, H, W, C)``
buffer, and the signal is a ``(T, C, H, W)`` view of it, so reading costs ``T*H*W*C`` bytes
(plus one decoded frame; up to 1.5x that while the buffer grows, when a file understates its
frame count). uint8 arrays and tensors are used in place (no copy unless resized). uint16 and
float inputs give a float32 signal (``4*T*H*W*C`` bytes), converted a few frames at a time.
Decoding and :meth:`VideoAdapter.quality` work a few frames at a time too, so no step holds
the clip in float64.
"""

from __future__ import annotations

import math
import operator
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from neurep.errors import FormatError, InputError
from neurep.modalities import _scaling, _video_io
from neurep.modalities.base import ModalityAdapter, is_path, path_suffix, read_head
from neurep.modalities.registry import register

VIDEO_EXTENSIONS = (
    ".mp4",
    ".mov",
    ".mkv",
    ".avi",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".m2ts",
    ".mts",
    ".wmv",
    ".flv",
    ".3gp",
    ".ogv",
    ".mxf",
    ".y4m",
    ".gif",
)
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
CHUNK_SAMPLES = 1 << 22  # samples converted at a time (32 MiB as float64)
QUALITY_CHUNK_SAMPLES = 1 << 20  # samples measured at a time (SSIM keeps ~10 maps of them)
# ISO base media "ftyp" brands that are still images, not video (HEIF, AVIF).
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"})


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


@dataclass(frozen=True)
class _Read:
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


class VideoAdapter(ModalityAdapter):
    """Clips of T frames, 1 or 3 channels; signal ``(T, C, H, W)``, one item per frame."""

    name: ClassVar[str] = "video"
    spatial_ndim = 2
    loss: ClassVar[str] = "mse"
    description: ClassVar[str] = (
        "video files (mp4/mov/mkv/avi/webm/..., through PyAV), folders of frame images "
        "(with modality='video'), numpy TxHxWxC and torch TxCxHxW clips (C = 1 or 3) of "
        "uint8/uint16/float"
    )
    extensions: ClassVar[tuple[str, ...]] = VIDEO_EXTENSIONS
    read_options: ClassVar[tuple[str, ...]] = ("frames", "size")
    item_label: ClassVar[str] = "frames"
    Configuration: ClassVar[type] = VideoConfiguration
    configuration: VideoConfiguration

    def __init__(self, configuration: VideoConfiguration) -> None:
        super().__init__(configuration)
        # The frames from_object read from a file or folder, while its signal is alive, so
        # quality() need not decode the file again (a weak reference: never kept for long).
        self._read_from: str | None = None
        self._read_frames: weakref.ref[np.ndarray] | None = None

    @property
    def preset_profile(self) -> str:
        return "video"

    # ---- choosing ------------------------------------------------------------------------

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        # Any 4-D array or tensor: from_object explains what is wrong with unsupported ones.
        if is_path(obj):
            return path_suffix(obj) in VIDEO_EXTENSIONS
        return isinstance(obj, np.ndarray | torch.Tensor) and obj.ndim == 4

    @classmethod
    def sniff(cls, path: Path) -> bool:
        head = read_head(path)
        return (
            (head[4:8] == b"ftyp" and head[8:12] not in IMAGE_BRANDS)  # mp4, mov, m4v, 3gp
            or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska, WebM
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or head.startswith(b"FLV")
        )

    # ---- there ---------------------------------------------------------------------------

    @classmethod
    def from_object(
        cls, obj: Any, *, frames: Any = None, size: Any = None
    ) -> tuple[VideoAdapter, torch.Tensor]:
        """Read a clip; the signal is ``(T, C, H, W)``: uint8 (value / 255) for 8-bit inputs
        (files, folders, uint8 arrays), float32 in ``[0, 1]`` otherwise.

        ``frames``: ``(start, stop)``, ``slice`` or ``"start:stop"``; ``size``:
        ``(width, height)`` or ``"WxH"`` (see the module notes).
        """
        start, stop = parse_frame_range(frames)
        out_size = parse_size(size)
        read = _read(obj, start, stop, out_size)
        configuration = VideoConfiguration(
            kind=read.kind,
            shape=list(read.shape),
            dtype=read.dtype,
            value_range=list(read.value_range),
            channels=int(read.signal.shape[1]),
            frames=int(read.signal.shape[0]),
            fps=read.fps,
            source=read.source,
            codec=read.codec,
            pixel_format=read.pixel_format,
            frame_range=[read.start, read.start + int(read.signal.shape[0])],
            size=None if out_size is None else list(out_size),
            ignored_streams=list(read.ignored_streams),
        )
        adapter = cls(configuration)
        if read.buffer is not None:
            adapter._read_from = _path_key(obj)
            adapter._read_frames = weakref.ref(read.buffer)
        return adapter, read.signal

    # ---- back ----------------------------------------------------------------------------

    def single_item(self, decoded: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """One frame's decode without its frame axis: ``decode(i)`` is ``decode()[i]``."""
        return decoded[0]

    def from_signal(self, signal: torch.Tensor) -> np.ndarray | torch.Tensor:
        """``(T', C, H, W)`` float in about ``[0, 1]`` (or uint8 meaning value / 255), T' <= T
        (a decode of some frames) -> numpy ``T'xHxWxC`` (files, folders, numpy) or torch
        ``T'xCxHxW``, in the original dtype."""
        config = self.configuration
        self._check_signal(signal)
        if config.kind == "torch":
            working = _scaling.numpy_working_dtype(config.dtype)
            values = _restore(signal, self.value_range, working, channels_last=False)
            return _scaling.numpy_to_tensor(values, config.dtype)
        return _restore(signal, self.value_range, np.dtype(config.dtype), channels_last=True)

    def signal_shape(self) -> tuple[int, ...]:
        return tuple(self._tchw)

    def _check_signal(self, signal: Any) -> None:
        if not isinstance(signal, torch.Tensor):
            raise TypeError(f"VideoAdapter.from_signal expects a torch.Tensor, got {signal!r}")
        frames, *frame_shape = self._tchw
        if (
            signal.ndim != 4
            or list(signal.shape[1:]) != frame_shape
            or not 1 <= signal.shape[0] <= frames
        ):
            raise ValueError(
                f"VideoAdapter.from_signal expects a signal of shape (T <= {frames}, "
                f"{', '.join(map(str, frame_shape))}), got {tuple(signal.shape)}"
            )

    # ---- configuration -------------------------------------------------------------------

    @classmethod
    def check_configuration(cls, configuration: VideoConfiguration) -> None:
        _check_configuration(configuration)

    # ---- measuring -----------------------------------------------------------------------

    @property
    def num_pixels(self) -> int:
        frames, _, height, width = self._tchw
        return frames * height * width

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.configuration.value_range
        return float(low), float(high)

    def as_array(self, obj: Any) -> np.ndarray:
        """``obj`` (the original, as given to from_object, or a full decode) as
        ``(T, C, H, W)`` float64 in original units. Holds the clip in float64: quality()
        does not use it."""
        return self._values(obj).astype(np.float64)

    def quality(self, original: Any, decoded: Any) -> dict[str, Any]:
        """PSNR and MS-SSIM of a full decode against the original, a few frames at a time.

        Returns ``{"psnr": dB of the whole clip (from the MSE over all frames),
        "ms_ssim": mean of the per-frame values (None if a side is under
        metrics.MIN_SSIM_SIDE), "psnr_frames": {"mean", "min"}}``. Identical frames have
        PSNR inf; ``psnr_frames["mean"]`` averages the finite per-frame values (inf when
        every frame is identical) and ``"min"`` is the worst frame.
        """
        from neurep import metrics

        reference = self._values(original)  # (T, C, H, W), original dtype
        test = self._values(decoded)  # (T, C, H, W)
        if reference.shape != test.shape:
            raise ValueError(
                f"decoded shape {test.shape} differs from the original's {reference.shape}"
            )
        data_range = self.data_range if self.data_range > 0 else 1.0  # constant clip
        low = self.value_range[0]  # SSIM expects values in [0, data_range]
        with_ssim = min(reference.shape[-2:]) >= metrics.MIN_SSIM_SIDE
        frame_mse: list[float] = []
        ssim_sum = 0.0
        for begin, end in _chunks(reference.shape, QUALITY_CHUNK_SAMPLES):
            ref = reference[begin:end].astype(np.float64)  # (b, C, H, W)
            tst = test[begin:end].astype(np.float64)
            frame_mse.extend(np.mean((ref - tst) ** 2, axis=(1, 2, 3)).tolist())
            if with_ssim:
                ssim_sum += metrics.ms_ssim(ref - low, tst - low, data_range) * (end - begin)
        frame_psnr = [_psnr(mse, data_range) for mse in frame_mse]
        finite = [value for value in frame_psnr if math.isfinite(value)]
        return {
            "psnr": _psnr(float(np.mean(frame_mse)), data_range),
            "ms_ssim": ssim_sum / len(frame_mse) if with_ssim else None,
            "psnr_frames": {
                "mean": float(np.mean(finite)) if finite else math.inf,
                "min": min(frame_psnr),
            },
        }

    def _values(self, obj: Any) -> np.ndarray:
        """The datum ``obj`` stands for as ``(T, C, H, W)`` in its original dtype (a view
        where possible): a full decode as it is; the original (a path, or an array in full)
        with the configured frame range and size applied."""
        config = self.configuration
        if is_path(obj):
            return self._frames_of_path(obj).transpose(0, 3, 1, 2)
        if isinstance(obj, np.ndarray) and obj.ndim == 4:
            tchw = obj.transpose(0, 3, 1, 2)
        elif isinstance(obj, torch.Tensor) and obj.ndim == 4:
            tchw = _scaling.tensor_to_numpy(obj)[0]
        else:
            raise ValueError(
                f"expected a video of {config.kind} kind, got {_scaling.describe(obj)}"
            )
        if list(obj.shape) == config.shape:
            return tchw
        if config.size is None:  # the original in full: keep the frames that were fitted
            return tchw[slice(*config.frame_range)]
        _, signal = self.from_object(obj, frames=tuple(config.frame_range), size=config.size)
        return self._values(self.from_signal(signal))

    def _frames_of_path(self, obj: Any) -> np.ndarray:
        """``(T, H, W, C)`` uint8 frames of a file or folder, as configured (from_object's
        own frames while they are alive, else read again)."""
        if self._read_frames is not None and self._read_from == _path_key(obj):
            frames = self._read_frames()
            if frames is not None:
                return frames
        config = self.configuration
        start, stop = config.frame_range
        size = None if config.size is None else (config.size[0], config.size[1])
        return _read_path(Path(os.fspath(obj)), start, stop, size).buffer

    @property
    def _tchw(self) -> list[int]:
        """``[T, C, H, W]`` of the decoded clip, from the configured shape."""
        shape = self.configuration.shape
        if self.configuration.kind == "torch":
            return list(shape)
        frames, height, width, channels = shape
        return [frames, channels, height, width]

    def __repr__(self) -> str:
        config = self.configuration
        return (
            f"VideoAdapter(kind={config.kind!r}, shape={config.shape}, dtype={config.dtype!r}, "
            f"fps={config.fps!r})"
        )


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


# ---- reading -----------------------------------------------------------------------------------


def _read(obj: Any, start: int, stop: int | None, size: tuple[int, int] | None) -> _Read:
    if is_path(obj):
        return _read_path(Path(os.fspath(obj)), start, stop, size)
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


def _read_path(path: Path, start: int, stop: int | None, size: tuple[int, int] | None) -> _Read:
    """A video file or a folder of frames, read as one uint8 buffer."""
    if path.is_dir():
        clip, kind = _video_io.read_frame_folder(path, start=start, stop=stop, size=size), "folder"
    elif path.is_file():
        clip, kind = _video_io.read_video(path, start=start, stop=stop, size=size), "file"
    else:
        raise InputError(f"{path}: no such file or folder")
    frames = clip.frames  # (T, H, W, C) uint8
    _check_frame_size(frames.shape[1:3], path)
    return _Read(
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
) -> _Read:
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
    return _Read(signal, kind, shape, dtype, value_range, start)


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
    for begin, end in _chunks(tchw.shape):
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
    for begin, end in _chunks(tchw.shape):
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


def _chunks(tchw_shape: tuple[int, ...], samples: int = CHUNK_SAMPLES) -> list[tuple[int, int]]:
    """``[(begin, end), ...]`` frame ranges of at most ``samples`` samples (or one frame)."""
    frames = tchw_shape[0]
    step = max(1, samples // max(1, math.prod(tchw_shape[1:])))
    return [(begin, min(begin + step, frames)) for begin in range(0, frames, step)]


def _path_key(obj: Any) -> str:
    return os.fspath(Path(os.fspath(obj)).resolve())


# ---- restoring and measuring -------------------------------------------------------------------


def _restore(
    signal: torch.Tensor, value_range: tuple[float, float], dtype: np.dtype, *, channels_last: bool
) -> np.ndarray:
    """A ``(T, C, H, W)`` signal in original units and ``dtype``: ``(T, H, W, C)`` if
    ``channels_last``, else ``(T, C, H, W)``; clipped to the range, integers rounded."""
    frames, channels, height, width = signal.shape
    shape = (frames, height, width, channels) if channels_last else tuple(signal.shape)
    out = np.empty(shape, dtype)
    for begin, end in _chunks(tuple(signal.shape)):
        chunk = signal[begin:end].detach().to("cpu", torch.float64)  # (b, C, H, W)
        if signal.dtype == torch.uint8:
            chunk = chunk / 255.0
        values = _scaling.from_unit(chunk.numpy(), *value_range, dtype)
        out[begin:end] = values.transpose(0, 2, 3, 1) if channels_last else values
    return out


def _psnr(mse: float, data_range: float) -> float:
    """``10 log10(data_range² / mse)``, inf when ``mse`` is 0 (as :func:`metrics.psnr`)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


# ---- configuration -----------------------------------------------------------------------------


def _check_configuration(config: VideoConfiguration) -> None:
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


register(VideoAdapter, priority=20)  # after image (10), before array (90): 4-D arrays are video
