"""Facts derived from a ``.nrep`` file's metadata (never its weights), and their text form."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from neurep.errors import NeurepError
from neurep.metrics import bits_per_pixel


def derive(metadata: dict[str, Any], file_bytes: int) -> dict[str, Any]:
    """Headline facts: file bytes, pixels and bpp (images), decoder parameters, embedding."""
    num_pixels = _num_pixels(metadata.get("modality"))
    fit = metadata.get("fit") or {}
    embedding = metadata.get("embedding") or {}
    weights = metadata.get("weights") or {}
    return {
        "file_bytes": file_bytes,
        "num_pixels": num_pixels,
        "bpp": bits_per_pixel(file_bytes, num_pixels) if num_pixels else None,
        "decoder_parameters": fit.get("decoder_parameters"),
        "embedding_shape": embedding.get("shape"),
        "precision": weights.get("precision"),
    }


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
    size = f"{derived['file_bytes']:,} bytes"
    if derived["bpp"] is not None:
        size += f", {derived['bpp']:.4f} bpp ({derived['num_pixels']:,} pixels)"
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
    parts += [
        f"{key} {_value(value)}" for key, value in quality.items() if key not in ("psnr", "ms_ssim")
    ]
    return ", ".join(parts)


def _num_pixels(modality: Any) -> int | None:
    """Pixels of an image datum from its modality configuration; None where bpp does not apply."""
    from neurep.modalities import adapter_from_config

    try:
        return adapter_from_config(modality).num_pixels
    except (NeurepError, ValueError, TypeError, KeyError):
        return None  # unknown or foreign modality: the summary still prints


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
