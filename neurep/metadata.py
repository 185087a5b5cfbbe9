"""The one place a datum's metadata is built (the file's ``neurep`` attributes, docs/FORMAT.md).

Real fits and rate control's dry runs both call :func:`datum_metadata`; storage changes go
through :func:`at_precision` and :func:`with_quantization`, quality through
:func:`with_quality`. The writer adds only the container's own keys (format, version,
creation time, library versions, the weights member and its digest).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "EMBEDDING_ARRAY",
    "FitRecord",
    "at_precision",
    "datum_metadata",
    "embedding_precision_for",
    "with_quality",
    "with_quantization",
]

#: The zarr array that holds the embedding, (B, E, *s).
EMBEDDING_ARRAY = "embedding"


def embedding_precision_for(precision: str) -> str:
    """The embedding's default precision for weights at ``precision``: int8 beside integer
    weights (it is a small part of the file, and 8 bits cost it little), else the same."""
    return "int8" if precision.startswith("int") else precision


@dataclass(frozen=True)
class FitRecord:
    """How a datum was fitted: the file's ``fit`` section, in the file's key order."""

    decoder_parameters: int
    preset: str
    steps: int
    learning_rate: float
    encoder_lr_scale: float
    train_encoder: bool
    seed: int
    wall_time_s: float
    device: str
    threads: int
    machine: str
    final_training_psnr: float | None
    budget_bytes: int | None
    target_psnr: float | None
    # The capacity rule that sized the decoder (Preset.parameters_per_sample), or None.
    capacity: dict[str, float] | None = None

    @classmethod
    def placeholder(cls, decoder_parameters: int) -> FitRecord:
        """A record whose values are as long as real ones, for sizing a file before a fit."""
        return cls(
            decoder_parameters=decoder_parameters,
            preset="balanced-conv",
            steps=100000,
            learning_rate=0.005,
            encoder_lr_scale=0.123456789,
            train_encoder=False,
            seed=0,
            wall_time_s=12345.678,
            device="cuda",
            threads=128,
            machine="x86_64",
            final_training_psnr=12.3456,
            budget_bytes=10**12,
            target_psnr=12.345678901234567,
            capacity={
                "parameters_per_sample": 0.123456789,
                "min_decoder_parameters": 123456,
                "width_scale": 0.123456789,
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The fields, without those that are None (format 1.1 writes no nulls here) and
        without non-finite numbers (JSON has none: a PSNR of an exact fit is infinite)."""
        return {
            key: value
            for key, value in asdict(self).items()
            if value is not None and not (isinstance(value, float) and not math.isfinite(value))
        }


#: Quality values as long as real ones (see :meth:`FitRecord.placeholder`).
PLACEHOLDER_QUALITY = {"psnr": 12.345678901234567, "ms_ssim": 0.12345678901234567}


def datum_metadata(
    *,
    modality: dict[str, Any],
    signal_shape: tuple[int, ...],
    loss: str,
    decoder: dict[str, Any],
    encoder: dict[str, Any],
    embedding_shape: tuple[int, ...],
    precision: str,
    embedding_precision: str | None,
    fit: FitRecord,
) -> dict[str, Any]:
    """The metadata of a datum before it is quantised and measured.

    Args:
        modality: the adapter's ``to_config()``.
        signal_shape: (B, C, *S) of the signal the decoder reproduces.
        loss: "mse" or "bce".
        decoder, encoder: ``{"name", "configuration"}`` of the models.
        embedding_shape: (B, E, *s).
        precision: the weights' storage precision ("float32", "int8", ...).
        embedding_precision: the embedding's (None: :func:`embedding_precision_for`).
    """
    return {
        "modality": modality,
        "signal": {"shape": list(signal_shape), "loss": loss},
        "decoder": decoder,
        "encoder": encoder,
        "embedding": {
            "array": EMBEDDING_ARRAY,
            "shape": list(embedding_shape),
            "dtype": "float32",
            "precision": embedding_precision or embedding_precision_for(precision),
            "quantization": None,
        },
        "weights": {"precision": precision, "quantization": None},
        "fit": fit.to_json(),
        "quality": {"psnr": None, "ms_ssim": None},
    }


def at_precision(
    metadata: dict[str, Any], precision: str, embedding_precision: str | None = None
) -> dict[str, Any]:
    """A copy of ``metadata`` to be stored at ``precision`` instead (not yet quantised).

    ``embedding_precision`` None: :func:`embedding_precision_for` the new precision.
    """
    changed = copy.deepcopy(metadata)
    changed["weights"] = {"precision": precision, "quantization": None}
    changed["embedding"].update(
        dtype="float32",
        precision=embedding_precision or embedding_precision_for(precision),
        quantization=None,
    )
    return changed


def with_quantization(
    metadata: dict[str, Any],
    weights: dict[str, Any] | None,
    embedding_dtype: str,
    embedding: dict[str, Any] | None,
) -> dict[str, Any]:
    """``metadata`` with the quantisation parameters of its stored weights and embedding."""
    return {
        **metadata,
        "weights": {**metadata["weights"], "quantization": weights},
        "embedding": {
            **metadata["embedding"],
            "dtype": embedding_dtype,
            "quantization": embedding,
        },
    }


def with_quality(metadata: dict[str, Any], quality: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with the measured quality; an exact decode (PSNR inf) is recorded as a
    null PSNR and ``lossless: true``, since JSON has no infinity. Values are numbers or None,
    or one level of such (video: ``psnr_frames: {"mean", "min"}``)."""
    recorded = {key: _finite_or_none(value) for key, value in quality.items()}
    recorded["lossless"] = quality.get("psnr") == math.inf
    return {**metadata, "quality": recorded}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite_or_none(inner) for key, inner in value.items()}
    if value is None or not math.isfinite(value):
        return None
    return float(value)
