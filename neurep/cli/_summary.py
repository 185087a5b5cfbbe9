"""Facts derived from a ``.nrep`` file's metadata (never its weights), and their text form."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from neurep.errors import NeurepError
from neurep.metrics import bits_per_pixel


def derive(metadata: dict[str, Any], file_bytes: int) -> dict[str, Any]:
    """Headline facts: file bytes, pixels and bpp (images, video; None for shapes),
    decoder parameters, embedding, quality, for a video its frames, rate, size and source,
    and for a 3-D shape its grid, frame, source counts and shape metrics (else None)."""
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
        "shape": shape_facts(adapter, quality, file_bytes),
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


def shape_facts(
    adapter: Any, quality: dict[str, Any] | None = None, file_bytes: int | None = None
) -> dict[str, Any] | None:
    """A 3-D shape datum's kind, grid (``"32^3"``), fill, pitch and world frame, the input's
    bounds and counts, bits per voxel and shape metrics; None for other modalities.

    ``bounds`` is the input's bounding box and ``grid_bounds`` the box the voxels cover, both
    ``[[x, y, z] low, [x, y, z] high]`` in world units (a voxel grid's world units are its
    indices). Counts: a mesh's ``vertices`` and ``faces``, a point cloud's ``points``, a grid's
    ``occupied_voxels`` (None where they do not apply). Metrics are None where the file has
    none: ``chamfer_l1`` is in world units, ``chamfer_l1_normalised`` over the bounds'
    diagonal, ``f_score`` at a distance of one voxel.
    """
    from neurep.modalities.shapes import ShapeAdapter

    if not isinstance(adapter, ShapeAdapter):
        return None
    config = adapter.configuration
    shape = [int(size) for size in config.grid_shape]
    pitch = float(config.pitch)
    origin = [float(value) for value in config.origin]
    voxels = math.prod(shape)
    quality = quality or {}
    name = adapter.name
    return {
        "modality": name,
        "kind": config.kind,
        "grid_shape": shape,
        "grid": grid_text(shape),
        "voxels": voxels,
        "fill": config.fill,
        "pitch": pitch,
        "origin": origin,
        "bounds": [list(map(float, corner)) for corner in config.bounds],
        "grid_bounds": [
            [low - pitch / 2 for low in origin],
            [low + pitch * (size - 0.5) for low, size in zip(origin, shape, strict=True)],
        ],
        "source": config.source,
        "vertices": config.vertices if name == "mesh" else None,
        "faces": config.faces if name == "mesh" else None,
        "points": config.vertices if name == "points" else None,
        "occupied_voxels": config.vertices if name == "voxels" else None,
        "bits_per_voxel": None if file_bytes is None else file_bytes * 8 / voxels,
        **{key: _number_or_none(quality.get(key)) for key in SHAPE_METRICS},
    }


#: The shape metrics a shape datum's quality holds, as ``shape_facts`` reports them.
SHAPE_METRICS = ("iou", "occupancy_psnr", "chamfer_l1", "chamfer_l1_normalised", "f_score")


def grid_text(shape: list[int]) -> str:
    """``32^3`` for a cube, ``16x32x8`` otherwise."""
    if len(set(shape)) == 1:
        return f"{shape[0]}^{len(shape)}"
    return "x".join(map(str, shape))


def shape_text(shape: dict[str, Any]) -> str:
    """``mesh (trimesh), grid 32^3, fill solid, pitch 0.05924``."""
    return (
        f"{shape['modality']} ({shape['kind']}), grid {shape['grid']}, fill {shape['fill']}, "
        f"pitch {_value(shape['pitch'])}"
    )


def shape_counts_text(shape: dict[str, Any]) -> str:
    """``3,225 vertices, 5,856 faces`` / ``12,000 points`` / ``1,234 occupied voxels``."""
    if shape["vertices"] is not None:
        return f"{shape['vertices']:,} vertices, {shape['faces']:,} faces"
    if shape["points"] is not None:
        return f"{shape['points']:,} points"
    return f"{shape['occupied_voxels']:,} occupied voxels"


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
    shape = derived.get("shape")
    if shape is not None:
        lines.append(_row("shape", shape_text(shape)))
        lines.append(_row("source", f"{_shape_source(shape)}: {shape_counts_text(shape)}"))
        lines.append(
            _row(
                "bounds",
                f"{_corners(shape['bounds'])} (the voxels cover {_corners(shape['grid_bounds'])})",
            )
        )
    size = f"{derived['file_bytes']:,} bytes"
    if derived["bpp"] is not None:
        pixels = f"{derived['num_pixels']:,} pixels"
        if video is not None:
            pixels = f"{video['frames']:,} frames x {video['width']}x{video['height']} = {pixels}"
        size += f", {derived['bpp']:.4f} bpp ({pixels})"
    if shape is not None:
        size += (
            f", {shape['bits_per_voxel']:.4f} bits per voxel ({shape['grid']} = "
            f"{shape['voxels']:,} voxels)"
        )
    lines.append(_row("size", size))
    lines.append(_row("quality", quality_text(metadata.get("quality"), shape=shape is not None)))
    lines.append(_row("fit", _fields(metadata.get("fit"))))
    created = f"{metadata.get('created')}"
    if library.get("neurep"):
        created += f" with neurep {library['neurep']}"
    lines.append(_row("created", created))
    return lines


def quality_text(quality: dict[str, Any] | None, *, shape: bool = False) -> str:
    """``PSNR 28.10 dB, MS-SSIM 0.9512`` (``n/a`` where a value is missing); for a 3-D
    ``shape``, ``IoU 0.7751, Chamfer-L1 0.04168 (0.0161 of the diagonal), F-score 0.7647
    (at 1 voxel), occupancy PSNR 16.07 dB``."""
    quality = quality or {}
    if shape:
        return _shape_quality_text(quality)
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


def _shape_quality_text(quality: dict[str, Any]) -> str:
    iou, psnr = quality.get("iou"), quality.get("occupancy_psnr", quality.get("psnr"))
    chamfer, relative = quality.get("chamfer_l1"), quality.get("chamfer_l1_normalised")
    f_score = quality.get("f_score")
    chamfer_text = f"Chamfer-L1 {chamfer:.4g}" if _is_number(chamfer) else "Chamfer-L1 n/a"
    if _is_number(relative):
        chamfer_text += f" ({relative:.4g} of the diagonal)"
    parts = [
        f"IoU {iou:.4f}" if _is_number(iou) else "IoU n/a",
        chamfer_text,
        f"F-score {f_score:.4f} (at 1 voxel)" if _is_number(f_score) else "F-score n/a",
        f"occupancy PSNR {psnr:.2f} dB" if _is_number(psnr) else "occupancy PSNR n/a",
    ]
    shown = ("psnr", "ms_ssim", *SHAPE_METRICS)  # ms_ssim: always None for shapes
    parts += [f"{key} {_value(value)}" for key, value in quality.items() if key not in shown]
    return ", ".join(parts)


#: What a shape without a source file was fitted from, by its configured kind.
_SHAPE_OBJECTS = {
    "trimesh": "a trimesh object",
    "open3d_mesh": "an open3d mesh",
    "points_array": "a numpy array",
    "torch_points": "a torch tensor",
    "trimesh_points": "a trimesh point cloud",
    "open3d_points": "an open3d point cloud",
    "numpy_voxels": "a numpy grid",
    "torch_voxels": "a torch grid",
}


def _shape_source(shape: dict[str, Any]) -> str:
    return shape["source"] or _SHAPE_OBJECTS.get(shape["kind"], f"a {shape['kind']}")


def _corners(box: list[list[float]]) -> str:
    """``[-0.4716, -0.7368, -0.6689] to [0.4716, 0.9536, 1.049]``."""
    return f"{_value(box[0])} to {_value(box[1])}"


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
