"""Facts derived from a ``.nrep`` file's metadata (never its weights), and their text form."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from neurep.errors import NeurepError
from neurep.metrics import bits_per_pixel


def derive(metadata: dict[str, Any], file_bytes: int) -> dict[str, Any]:
    """Headline facts: file bytes, pixels and bpp (images, video), decoder parameters,
    embedding, quality, and for a video its frames, rate, size and source (else None)."""
    adapter = _adapter(metadata.get("modality"))
    num_pixels = _num_pixels(adapter)
    fit = metadata.get("fit") or {}
    embedding = metadata.get("embedding") or {}
    weights = metadata.get("weights") or {}
    quality = metadata.get("quality") or {}
    return {
        "file_bytes": file_bytes,
        "num_pixels": num_pixels,
        "bpp": bits_per_pixel(file_bytes, num_pixels) if num_pixels else None,
        "decoder_parameters": fit.get("decoder_parameters"),
        "embedding_shape": embedding.get("shape"),
        "precision": weights.get("precision"),
        "psnr": quality.get("psnr") if _is_number(quality.get("psnr")) else None,
        "ms_ssim": quality.get("ms_ssim") if _is_number(quality.get("ms_ssim")) else None,
        "video": video_facts(adapter, quality),
    }


def video_facts(adapter: Any, quality: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A video datum's frames, fps (``"30000/1001"`` and as a number), width, height,
    duration in seconds, source, codec, pixel format, frame range, read size, ignored
    streams and per-frame PSNR; None for other modalities. ``adapter``'s configuration has
    been checked (:func:`neurep.modalities.adapter_from_config`), so its fields are sound."""
    if adapter is None or getattr(adapter, "name", None) != "video":
        return None
    config = adapter.configuration
    width, height = frame_width_height(config.kind, config.shape)
    rate = Fraction(config.fps)
    per_frame = (quality or {}).get("psnr_frames")
    per_frame = per_frame if isinstance(per_frame, dict) else {}
    return {
        "frames": config.frames,
        "fps": config.fps,
        "fps_decimal": float(rate),
        "width": width,
        "height": height,
        "duration_s": float(config.frames / rate),
        "kind": config.kind,
        "source": config.source,
        "codec": config.codec,
        "pixel_format": config.pixel_format,
        "frame_range": list(config.frame_range),
        "size": None if config.size is None else list(config.size),
        "ignored_streams": list(config.ignored_streams),
        "psnr_frames_mean": _number_or_none(per_frame.get("mean")),
        "psnr_frames_min": _number_or_none(per_frame.get("min")),
    }


def frame_width_height(kind: str, shape: list[int]) -> tuple[int, int]:
    """``(width, height)`` of a video's frames from its configured shape
    (``[T, H, W, C]``, torch ``[T, C, H, W]``)."""
    height, width = shape[2:4] if kind == "torch" else shape[1:3]
    return int(width), int(height)


def fps_text(fps: str) -> str:
    """``"30000/1001 fps (29.97)"``; ``"25 fps"`` for whole rates."""
    rate = Fraction(fps)
    if rate.denominator == 1:
        return f"{rate.numerator} fps"
    return f"{fps} fps ({f'{float(rate):.3f}'.rstrip('0').rstrip('.')})"


def describe(path: Path, metadata: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """The human-readable summary printed by ``neurep info``, one string per line."""
    modality = metadata.get("modality") or {}
    decoder = metadata.get("decoder") or {}
    embedding = metadata.get("embedding") or {}
    weights = metadata.get("weights") or {}
    library = metadata.get("library") or {}
    lines = [f"{path}  ({derived['file_bytes']:,} bytes, format {metadata.get('format_version')})"]
    lines.append(
        _row("modality", f"{modality.get('name')}: {_fields(modality.get('configuration'))}")
    )
    parameters = derived["decoder_parameters"]
    parameter_text = f"{parameters:,} parameters" if isinstance(parameters, int) else "? parameters"
    lines.append(_row("decoder", f"{decoder.get('name')}, {parameter_text}"))
    lines.append(
        _row(
            "weights",
            f"{weights.get('precision')}, {_bytes(weights.get('nbytes'))}"
            + _quantization_note(weights.get("quantization")),
        )
    )
    lines.append(
        _row(
            "embedding",
            f"{embedding.get('shape')} {embedding.get('dtype')}"
            + _quantization_note(embedding.get("quantization")),
        )
    )
    video = derived.get("video")
    if video is not None:
        lines.append(
            _row(
                "video",
                f"{video['frames']:,} frames, {video['width']}x{video['height']}, "
                f"{fps_text(video['fps'])}, {video['duration_s']:.3f} s",
            )
        )
        lines.append(_row("source", _video_source_text(video)))
    size = f"{derived['file_bytes']:,} bytes"
    if derived["bpp"] is not None:
        pixels = f"{derived['num_pixels']:,} pixels"
        if video is not None:
            pixels = f"{video['frames']:,} frames x {video['width']}x{video['height']} = {pixels}"
        size += f", {derived['bpp']:.4f} bpp ({pixels})"
    lines.append(_row("size", size))
    lines.append(_row("quality", quality_text(metadata.get("quality"))))
    lines.append(_row("fit", _fields(metadata.get("fit"))))
    created = f"{metadata.get('created')}"
    if library.get("neurep"):
        created += f" with neurep {library['neurep']}"
    lines.append(_row("created", created))
    return lines


def quality_text(quality: dict[str, Any] | None) -> str:
    """``PSNR 28.10 dB, MS-SSIM 0.9512`` (``n/a`` where a value is missing)."""
    quality = quality or {}
    psnr = quality.get("psnr")
    ms_ssim = quality.get("ms_ssim")
    parts = [
        f"PSNR {psnr:.2f} dB" if _is_number(psnr) else "PSNR n/a",
        f"MS-SSIM {ms_ssim:.4f}" if _is_number(ms_ssim) else "MS-SSIM n/a",
    ]
    per_frame = quality.get("psnr_frames")
    if isinstance(per_frame, dict):  # video: {"mean": dB, "min": dB}
        mean, low = per_frame.get("mean"), per_frame.get("min")
        parts.append(
            "per-frame PSNR "
            + (f"mean {mean:.2f} dB" if _is_number(mean) else "mean n/a")
            + (f", min {low:.2f} dB" if _is_number(low) else ", min n/a")
        )
    shown = ("psnr", "ms_ssim", *(("psnr_frames",) if isinstance(per_frame, dict) else ()))
    parts += [f"{key} {_value(value)}" for key, value in quality.items() if key not in shown]
    return ", ".join(parts)


def _video_source_text(video: dict[str, Any]) -> str:
    """``clip.mp4: h264 yuv420p, frames 0:120, resized to 640x360, ignored streams: audio``."""
    kind = video["kind"]
    source = video["source"] or {"numpy": "a numpy array", "torch": "a torch tensor"}.get(
        kind, f"a {kind}"
    )
    if kind == "folder":
        source += " (folder of frames)"
    parts = []
    if video["codec"]:
        parts.append(" ".join(filter(None, (video["codec"], video["pixel_format"]))))
    start, stop = video["frame_range"]
    parts.append(f"frames {start}:{stop}")
    if video["size"] is not None:
        parts.append(f"resized to {video['size'][0]}x{video['size'][1]}")
    if kind == "file":
        parts.append(f"ignored streams: {', '.join(video['ignored_streams']) or 'none'}")
    return f"{source}: {', '.join(parts)}"


def _adapter(modality: Any) -> Any:
    """The adapter a file's modality metadata describes; None if this neurep cannot build
    it (unknown or foreign modality, malformed configuration): the summary still prints."""
    from neurep.modalities import adapter_from_config

    try:
        return adapter_from_config(modality)
    except (NeurepError, ValueError, TypeError, KeyError):
        return None


def _num_pixels(adapter: Any) -> int | None:
    """Pixels of an image (H x W) or a video (T x H x W); None where bpp does not apply."""
    try:
        return None if adapter is None else adapter.num_pixels
    except (NeurepError, ValueError, TypeError, KeyError):
        return None


def _row(label: str, text: str) -> str:
    return f"  {label:<10} {text}"


def _fields(configuration: Any) -> str:
    if not isinstance(configuration, dict) or not configuration:
        return "-"
    return " ".join(
        f"{key}={_value(value)}" for key, value in configuration.items() if value is not None
    )


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def _bytes(count: Any) -> str:
    return f"{count:,} bytes" if isinstance(count, int) else "? bytes"


def _quantization_note(quantization: Any) -> str:
    """`` (quantised: affine)`` when values are stored as codes; empty for plain casts."""
    if not isinstance(quantization, dict):
        return ""
    if quantization.get("version") == 2:  # format 1.1: one letter per tensor, or scales
        layout = quantization.get("layout")
        coded = "scale" in quantization or (
            isinstance(layout, str) and any(c == "t" or c.isdigit() for c in layout)
        )
        return " (quantised: affine)" if coded else ""
    tensors = quantization.get("tensors")
    entries = list(tensors.values()) if isinstance(tensors, dict) else [quantization]
    methods = {entry.get("method") for entry in entries if isinstance(entry, dict)}
    methods.discard(None)
    methods.discard("cast")
    return f" (quantised: {', '.join(sorted(map(str, methods)))})" if methods else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value: Any) -> float | None:
    return value if _is_number(value) else None
