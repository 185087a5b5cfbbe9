"""The top-level verbs: :func:`fit`, :func:`save`, :func:`load`, :func:`open`."""

from __future__ import annotations

import copy
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurep.datum import NeuralDatum
from neurep.errors import InputError
from neurep.fitting import fit_signal, get_preset, plan
from neurep.fitting.rate import PRECISION_LADDER, choose_for_budget, lower_precisions
from neurep.formats import NrepReader, open_nrep
from neurep.modalities import resolve
from neurep.models import build

__all__ = ["NeuralDatum", "fit", "load", "open", "save"]


def fit(
    obj: Any,
    *,
    modality: str | None = None,
    preset: str = "balanced",
    steps: int | None = None,
    learning_rate: float | None = None,
    train_encoder: bool | None = None,
    seed: int = 0,
    precision: str | None = None,
    embedding_precision: str | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    psnr: float | None = None,
    target_psnr: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> NeuralDatum:
    """Fit a neural datum to ``obj``.

    Args:
        obj: an image (path, numpy HxW[xC], torch CxHxW, PIL), or a 1-D/2-D/3-D numeric
            array or tensor; see :mod:`neurep.modalities` for everything accepted.
        modality: force an adapter by name ("image", "array", ...) instead of detecting one.
        preset: "fast", "balanced" (default), "balanced-conv" (LPNet-Conv), "paper" (the
            paper's Kodak settings, literally), "paper-conv", "paper-convnext".
        steps, learning_rate: override the preset's.
        train_encoder: False fits the decoder alone to the untrained encoder's embedding:
            about 2x faster per step, and on Kodak at least as good (benchmarks/
            encoder_ablation.py). Default: the preset's (every preset trains it, as the paper).
        seed: the same seed and input give the same datum.
        precision: storage precision of the decoder weights ("float32", "float16",
            "bfloat16", "int8" ... "int4"; default float32, or chosen by the budget);
            applied now, so the returned datum decodes exactly as the saved file will.
        embedding_precision: the embedding's precision (default: int8 for integer weight
            precisions, else the weights').
        bpp, max_bytes: a size budget (bits per pixel of the datum, or bytes); the decoder's
            width and precision are chosen so the saved file is at most this big.
        psnr: a quality target in dB: fitting stops once the training PSNR is this plus a
            margin for int8 storage, and the datum is stored at int8.
        target_psnr: stop as soon as the training PSNR reaches this many dB.
        progress: show a progress bar with the running PSNR.
        device: "cpu", "cuda", ... (default: CUDA when available).

    Returns:
        A :class:`NeuralDatum`; ``datum.metadata["quality"]`` holds the PSNR and MS-SSIM of
        its decode against ``obj``, measured in ``obj``'s own dtype and units.

    Raises:
        neurep.InputError: unusable input, unknown preset, or a budget too small for any model.
    """
    if bpp is not None and max_bytes is not None:
        raise InputError("give either bpp= or max_bytes=, not both")
    if train_encoder is not None and not isinstance(train_encoder, bool):
        raise InputError(f"train_encoder must be True, False or None, not {train_encoder!r}")
    adapter_cls = resolve(obj, modality)
    adapter, signal = adapter_cls.from_object(obj)  # signal: (B, C, *S) in [0, 1]
    chosen = get_preset(preset).with_overrides(
        steps=steps, learning_rate=learning_rate, train_encoder=train_encoder
    )
    spatial = tuple(signal.shape[2:])
    if bpp is not None:
        max_bytes = int(bpp * _num_pixels(adapter, signal) / 8)
    if psnr is not None:
        target_psnr = psnr + PSNR_MARGIN_FOR_INT8
        precision = precision or "int8"
    if max_bytes is not None:
        ladder = (precision,) if precision else PRECISION_LADDER
        candidate = choose_for_budget(
            chosen,
            signal.shape[1],
            spatial,
            max_bytes,
            lambda models, p, path: _dry_run_size(adapter, signal, models, p, path),
            ladder,
        )
        chosen, models, precision = candidate.preset, candidate.plan, candidate.precision
    else:
        models = plan(chosen, signal.shape[1], spatial)
    precision = precision or "float32"
    chosen = models.preset  # as it applies to this signal's rank
    result = fit_signal(
        signal,
        models,
        steps=chosen.steps,
        seed=seed,
        loss=adapter.loss,
        target_psnr=target_psnr,
        progress=progress,
        device=device,
        description=f"neurep fit ({adapter.name}, {chosen.name})",
    )
    embedding = result.embedding.numpy().astype(np.float32)
    metadata = _metadata(
        adapter, signal, models, result.decoder, embedding, precision, embedding_precision
    )
    metadata["fit"].update(
        preset=chosen.name,
        steps=result.steps,
        learning_rate=chosen.learning_rate,
        encoder_lr_scale=chosen.encoder_lr_scale,
        train_encoder=chosen.train_encoder,
        seed=seed,
        wall_time_s=round(result.wall_time_s, 3),
        device=str(device or ("cuda" if torch.cuda.is_available() else "cpu")),
        threads=torch.get_num_threads(),
        machine=platform.machine(),
        final_training_psnr=round(result.history[-1], 4) if result.history else None,
        budget_bytes=max_bytes,
        target_psnr=target_psnr,
    )
    float_state = {k: v.clone() for k, v in result.decoder.state_dict().items()}
    datum = _stored_at(metadata, result.decoder, float_state, embedding, precision, adapter, obj)
    if max_bytes is not None:
        size = _saved_size(datum)  # each measurement writes a whole file: once per candidate
        for fallback in lower_precisions(precision):
            if size <= max_bytes:
                break
            datum = _stored_at(
                metadata, result.decoder, float_state, embedding, fallback, adapter, obj
            )
            size = _saved_size(datum)
        if size > max_bytes:
            raise InputError(f"could not fit the datum in {max_bytes} bytes (smallest: {size})")
    return datum


#: How much higher than a psnr= target the fit aims, to absorb int8 storage (measured <0.1 dB).
PSNR_MARGIN_FOR_INT8 = 0.2


def _num_pixels(adapter, signal: torch.Tensor) -> int:
    """Pixels (images) or elements per channel (arrays): what bits-per-pixel divides by."""
    pixels = getattr(adapter, "num_pixels", None)
    return int(pixels) if pixels else int(signal.shape[0] * np.prod(signal.shape[2:]))


def _metadata(adapter, signal, models, decoder, embedding, precision, embedding_precision):
    if embedding_precision is None:
        embedding_precision = "int8" if precision.startswith("int") else precision
    return {
        "modality": adapter.to_config(),
        "signal": {"shape": list(signal.shape), "loss": adapter.loss},
        "decoder": decoder.to_config(),
        "encoder": models.encoder,
        "embedding": {
            "array": "embedding",
            "shape": list(embedding.shape),
            "dtype": "float32",
            "precision": embedding_precision,
            "quantization": None,
        },
        "weights": {"precision": precision, "quantization": None},
        "fit": {"decoder_parameters": decoder.num_parameters()},
        "quality": {"psnr": None, "ms_ssim": None},
    }


def _stored_at(metadata, decoder, float_state, embedding, precision, adapter, obj) -> NeuralDatum:
    """A datum whose weights are quantised at ``precision``, with its quality measured."""
    decoder.load_state_dict(float_state)
    metadata = copy.deepcopy(metadata)
    metadata["weights"]["precision"] = precision
    if precision.startswith("int") and metadata["embedding"]["precision"].startswith("float"):
        metadata["embedding"]["precision"] = "int8"
    datum = NeuralDatum(metadata, decoder=decoder, embedding=embedding)
    datum.freeze_storage()
    quality = adapter.quality(obj, datum.decode())
    datum.metadata["quality"] = {k: _finite_or_none(v) for k, v in quality.items()}
    datum.metadata["quality"]["lossless"] = quality.get("psnr") == float("inf")
    return datum


def _saved_size(datum: NeuralDatum) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        return datum.save(Path(workdir) / "size.nrep")


def _dry_run_size(adapter, signal, models, precision: str, path: Path) -> int:
    """Bytes of a file for this plan and precision, written with untrained weights."""
    decoder = build(models.decoder)
    latent = [s // models.total_stride for s in models.padded_shape]
    embedding = np.zeros(
        (signal.shape[0], models.decoder["configuration"]["in_channels"], *latent), np.float32
    )
    metadata = _metadata(adapter, signal, models, decoder, embedding, precision, None)
    metadata["fit"].update(_DRY_RUN_FIT_FIELDS)
    datum = NeuralDatum(metadata, decoder=decoder, embedding=embedding)
    datum.freeze_storage()
    datum.metadata["quality"] = {
        "psnr": 12.345678901234567,
        "ms_ssim": 0.12345678901234567,
        "lossless": False,
    }
    return datum.save(path)


# Values as long as real ones, so the dry-run metadata is as big as the final one.
_DRY_RUN_FIT_FIELDS = {
    "preset": "balanced-conv",
    "steps": 100000,
    "learning_rate": 0.005,
    "encoder_lr_scale": 0.123456789,
    "seed": 0,
    "wall_time_s": 12345.678,
    "device": "cuda",
    "threads": 128,
    "machine": "x86_64",
    "final_training_psnr": 12.3456,
    "budget_bytes": 10**12,
    "target_psnr": 12.345678901234567,
}


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no infinity: an exact reconstruction is recorded as null with a flag."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def save(datum: NeuralDatum, path: str | os.PathLike) -> int:
    """Write ``datum`` to ``path`` (atomically); returns the file's size in bytes."""
    return datum.save(path)


def load(path: str | os.PathLike) -> NeuralDatum:
    """Open a ``.nrep`` file as a :class:`NeuralDatum`; weights are read on first decode.

    Raises:
        neurep.FormatError: the file is damaged, foreign, or of an unsupported version.
    """
    return NeuralDatum.from_file(path)


def open(path: str | os.PathLike) -> NrepReader:
    """Read only a file's metadata: ``neurep.open(p).metadata``; no weights are read."""
    return open_nrep(path)
