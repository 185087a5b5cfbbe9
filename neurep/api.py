"""The top-level verbs: :func:`fit`, :func:`save`, :func:`load`, :func:`open`."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from neurep.datum import NeuralDatum
from neurep.fitting import fit_signal, get_preset, plan
from neurep.formats import NrepReader, open_nrep
from neurep.modalities import resolve

__all__ = ["NeuralDatum", "fit", "load", "open", "save"]


def fit(
    obj: Any,
    *,
    modality: str | None = None,
    preset: str = "balanced",
    steps: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    precision: str = "float32",
    embedding_precision: str | None = None,
    target_psnr: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> NeuralDatum:
    """Fit a neural datum to ``obj``.

    Args:
        obj: an image (path, numpy HxW[xC], torch CxHxW, PIL), or a 1-D/2-D/3-D numeric
            array or tensor; see :mod:`neurep.modalities` for everything accepted.
        modality: force an adapter by name ("image", "array", ...) instead of detecting one.
        preset: "fast", "balanced" (default), "paper" (the paper's Kodak settings),
            "paper-conv" (LPNet-Conv baseline), "paper-convnext" (ConvNeXt baseline).
        steps, learning_rate: override the preset's.
        seed: the same seed and input give the same datum.
        precision: storage precision of the decoder weights ("float32", "float16",
            "bfloat16", "int8" ... "int4"); applied now, so the returned datum decodes exactly
            as the saved file will.
        embedding_precision: the embedding's precision (default: the weights').
        target_psnr: stop as soon as the training PSNR reaches this many dB.
        progress: show a progress bar with the running PSNR.
        device: "cpu", "cuda", ... (default: CUDA when available).

    Returns:
        A :class:`NeuralDatum`; ``datum.metadata["quality"]`` holds the PSNR and MS-SSIM of
        its decode against ``obj``, measured in ``obj``'s own dtype and units.
    """
    adapter_cls = resolve(obj, modality)
    adapter, signal = adapter_cls.from_object(obj)  # signal: (B, C, *S) in [0, 1]
    chosen = get_preset(preset).with_overrides(steps=steps, learning_rate=learning_rate)
    models = plan(chosen, signal.shape[1], tuple(signal.shape[2:]))
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
    metadata = {
        "modality": adapter.to_config(),
        "signal": {"shape": list(signal.shape), "loss": adapter.loss},
        "decoder": result.decoder.to_config(),
        "encoder": models.encoder,
        "embedding": {
            "array": "embedding",
            "shape": list(embedding.shape),
            "dtype": "float32",
            "precision": embedding_precision or precision,
            "quantization": None,
        },
        "weights": {"precision": precision, "quantization": None},
        "fit": {
            "preset": chosen.name,
            "steps": result.steps,
            "learning_rate": chosen.learning_rate,
            "seed": seed,
            "wall_time_s": round(result.wall_time_s, 3),
            "device": str(next(iter(result.decoder.parameters())).device)
            if device is None
            else str(device),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "decoder_parameters": result.decoder.num_parameters(),
            "final_training_psnr": round(result.history[-1], 4) if result.history else None,
        },
        "quality": {"psnr": None, "ms_ssim": None},
    }
    datum = NeuralDatum(metadata, decoder=result.decoder, embedding=embedding)
    datum.freeze_storage()
    quality = adapter.quality(obj, datum.decode())
    datum.metadata["quality"] = {k: _finite_or_none(v) for k, v in quality.items()}
    return datum


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


def open(path: str | os.PathLike) -> NrepReader:  # noqa: A001 - the verb the brief asks for
    """Read only a file's metadata: ``neurep.open(p).metadata``; no weights are read."""
    return open_nrep(path)
