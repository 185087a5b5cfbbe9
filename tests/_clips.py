"""Tiny test clips, encoded with PyAV directly (not with neurep's writer, which is under test)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def moving_gradient(frames: int = 10, height: int = 24, width: int = 32) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a horizontal red ramp that moves right, a vertical green ramp,
    and a blue level that grows with the frame index (so frames are easy to tell apart)."""
    t = np.arange(frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    red, green, blue = np.broadcast_arrays((x * 8 + t * 12) % 256, y * 10 % 256, t * 20 % 256)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)  # (T, H, W, 3)


def encode(
    path: Path,
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    fps: Fraction | int = 25,
    container_format: str | None = None,
    audio: bool = False,
    faststart: bool = False,
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 at ``fps`` (optionally with a short AAC track;
    ``faststart``: mp4 index before the frames, so a truncated file still opens)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container_format, options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=8000) if audio else None
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            _add_silence(container, sound)
    return path


def encode_audio_only(path: Path) -> Path:
    """A file holding one AAC stream and nothing else."""
    with av.open(str(path), mode="w") as container:
        _add_silence(container, container.add_stream("aac", rate=8000))
    return path


def _add_silence(container, stream) -> None:
    samples = np.zeros((1, 2048), np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode())


def decode_with_pyav(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of ``path``'s first video stream as PyAV gives it (resized to ``size`` =
    (width, height) if given): (T, H, W, 3) uint8."""
    width, height = size or (None, None)
    with av.open(str(path)) as container:
        return np.stack(
            [
                frame.to_ndarray(format="rgb24", width=width, height=height)
                for frame in container.decode(video=0)
            ]
        )


def write_pngs(folder: Path, frames: np.ndarray, names: list[str]) -> Path:
    """``frames`` (T, H, W, C) uint8 as images called ``names`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for pixels, name in zip(frames, names, strict=True):
        plane = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
        Image.fromarray(plane).save(folder / name)
    return folder
