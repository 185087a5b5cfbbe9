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
import os
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurep.modalities import _scaling, _video_config
from neurep.modalities._video_config import (
    VideoConfiguration,
    parse_frame_range,
    parse_size,
)
from neurep.modalities._video_read import frame_chunks, path_key, read_clip, read_path
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
QUALITY_CHUNK_SAMPLES = 1 << 20  # samples measured at a time (SSIM keeps ~10 maps of them)
# ISO base media "ftyp" brands that are still images, not video (HEIF, AVIF).
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"})


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
    item_axis: ClassVar[bool] = True
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
        read = read_clip(obj, start, stop, out_size)
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
            adapter._read_from = path_key(obj)
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
        _video_config.check_configuration(configuration)

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
        for begin, end in frame_chunks(reference.shape, QUALITY_CHUNK_SAMPLES):
            ref = reference[begin:end].astype(np.float64)  # (b, C, H, W)
            tst = test[begin:end].astype(np.float64)
            frame_mse.extend(np.mean((ref - tst) ** 2, axis=(1, 2, 3)).tolist())
            if with_ssim:
                ssim_sum += metrics.ms_ssim(ref - low, tst - low, data_range) * (end - begin)
        frame_psnr = [metrics.psnr_from_mse(mse, data_range) for mse in frame_mse]
        finite = [value for value in frame_psnr if math.isfinite(value)]
        return {
            "psnr": metrics.psnr_from_mse(float(np.mean(frame_mse)), data_range),
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
        if self._read_frames is not None and self._read_from == path_key(obj):
            frames = self._read_frames()
            if frames is not None:
                return frames
        config = self.configuration
        start, stop = config.frame_range
        size = None if config.size is None else (config.size[0], config.size[1])
        return read_path(Path(os.fspath(obj)), start, stop, size).buffer

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


# ---- restoring and measuring -------------------------------------------------------------------


def _restore(
    signal: torch.Tensor, value_range: tuple[float, float], dtype: np.dtype, *, channels_last: bool
) -> np.ndarray:
    """A ``(T, C, H, W)`` signal in original units and ``dtype``: ``(T, H, W, C)`` if
    ``channels_last``, else ``(T, C, H, W)``; clipped to the range, integers rounded."""
    frames, channels, height, width = signal.shape
    shape = (frames, height, width, channels) if channels_last else tuple(signal.shape)
    out = np.empty(shape, dtype)
    for begin, end in frame_chunks(tuple(signal.shape)):
        chunk = signal[begin:end].detach().to("cpu", torch.float64)  # (b, C, H, W)
        if signal.dtype == torch.uint8:
            chunk = chunk / 255.0
        values = _scaling.from_unit(chunk.numpy(), *value_range, dtype)
        out[begin:end] = values.transpose(0, 2, 3, 1) if channels_last else values
    return out


register(VideoAdapter, priority=20)  # after image (10), before array (90): 4-D arrays are video
