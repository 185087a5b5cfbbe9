"""The top-level verbs: :func:`fit`, :func:`save`, :func:`load`, :func:`open`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from neurep.datum import NeuralDatum
from neurep.fitting.pipeline import StorageTarget, fit_datum
from neurep.fitting.presets import Preset, as_preset
from neurep.fitting.rate import budget_bytes
from neurep.formats import NrepReader, open_nrep
from neurep.modalities import resolve

__all__ = ["NeuralDatum", "fit", "load", "open", "save"]


def fit(
    obj: Any,
    *,
    modality: str | None = None,
    preset: str | Preset = "balanced",
    steps: int | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    precision: str | None = None,
    embedding_precision: str | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    psnr: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    **options: Any,
) -> NeuralDatum:
    """Fit a neural datum to ``obj``.

    Args:
        obj: an image (path, numpy HxW[xC], torch CxHxW, PIL), a 1-D/2-D/3-D numeric array
            or tensor, or anything a registered adapter accepts (:mod:`neurep.modalities`).
        modality: force an adapter by name ("image", "array", ...) instead of detecting one.
        preset: a name ("fast", "balanced" (default), "balanced-conv", "paper", "paper-conv",
            "paper-convnext") or a :class:`neurep.fitting.Preset`; the datum's modality
            picks the preset's profile (images, volumes).
        steps, epochs, learning_rate: override the preset's (``epochs``: passes over the
            items of a batched fit, e.g. a video's frames; ``steps`` alone replaces them).
        seed: the same seed and input give the same datum.
        precision: storage precision of the decoder weights ("int8" by default, "int7" ...
            "int4", "float16", "bfloat16", "float32"; or chosen by a budget); applied now,
            so the returned datum decodes exactly as the saved file will.
        embedding_precision: the embedding's (default: int8 beside integer weights, else
            the weights').
        bpp, max_bytes: a size budget (bits per pixel of the datum, or bytes); the decoder's
            width and precision are chosen so that the saved file is at most this big.
        psnr: a quality target in dB: fitting stops once the training PSNR is this plus a
            0.2 dB margin for int8 storage.
        progress: show a progress bar with the running PSNR.
        device: "cpu", "cuda", ... (default: CUDA when available).
        **options: how the modality reads ``obj`` (video: ``frames=(0, 120)``,
            ``size=(640, 360)``); each modality names its own and rejects others.

    Returns:
        A :class:`NeuralDatum`; ``datum.metadata["quality"]`` holds the PSNR and MS-SSIM of
        its decode against ``obj``, measured in ``obj``'s own dtype and units.

    Raises:
        neurep.InputError: unusable input, unknown preset, or a budget too small for any model.
    """
    prepared = prepare_fit(
        obj,
        modality=modality,
        preset=preset,
        steps=steps,
        epochs=epochs,
        learning_rate=learning_rate,
        seed=seed,
        precision=precision,
        embedding_precision=embedding_precision,
        bpp=bpp,
        max_bytes=max_bytes,
        psnr=psnr,
        progress=progress,
        device=device,
        **options,
    )
    return fit_datum(
        prepared.obj,
        prepared.adapter,
        prepared.signal,
        prepared.preset,
        prepared.target,
        seed=prepared.seed,
        progress=prepared.progress,
        device=prepared.device,
    )


@dataclass
class PreparedFit:
    """What :func:`fit` passes to :func:`~neurep.fitting.pipeline.fit_datum`, read and
    resolved from its arguments (see :func:`prepare_fit`)."""

    obj: Any
    adapter: Any
    signal: torch.Tensor
    preset: Preset
    target: StorageTarget
    seed: int
    progress: bool
    device: str | torch.device | None


def prepare_fit(
    obj: Any,
    *,
    modality: str | None = None,
    preset: str | Preset = "balanced",
    steps: int | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    precision: str | None = None,
    embedding_precision: str | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    psnr: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    **options: Any,
) -> PreparedFit:
    """:func:`fit`'s arguments read and resolved, before fitting: the adapter and signal
    of ``obj``, the preset with its overrides, the storage target (a ``bpp`` budget in
    bytes). Batch conversion uses it to fit several items at once
    (:func:`~neurep.fitting.pipeline.fit_datums`)."""
    chosen = as_preset(preset).with_overrides(
        steps=steps, epochs=epochs, learning_rate=learning_rate
    )
    adapter, signal = resolve(obj, modality).read(obj, **options)  # signal: (B, C, *S)
    target = StorageTarget(
        precision=precision,
        embedding_precision=embedding_precision,
        max_bytes=budget_bytes(adapter, signal, bpp=bpp, max_bytes=max_bytes),
        psnr=psnr,
    )
    return PreparedFit(obj, adapter, signal, chosen, target, seed, progress, device)


def save(datum: NeuralDatum, path: str | os.PathLike) -> int:
    """Write ``datum`` to ``path`` (atomically); returns the file's size in bytes."""
    return datum.save(path)


def load(path: str | os.PathLike, item: int | str | None = None):
    """Open a ``.nrep`` file as a :class:`NeuralDatum`; weights are read on first decode.

    ``path`` may be a collection folder (:func:`neurep.fit_collection`): the
    :class:`~neurep.NeuralCollection`, or with ``item`` (a position) that item's datum.

    ``path`` may also be a pack (``neurep pack``; :mod:`neurep.data.packs`): ``item`` then
    picks the datum, by position or by name (its output path, or its source).

    Raises:
        neurep.FormatError: the file is damaged, foreign, or of an unsupported version (for
            a pack: the message names the item).
        KeyError, IndexError: no such item in the pack.
    """
    from neurep.collection import NeuralCollection, is_collection
    from neurep.data.packs import PackReader, is_pack

    if is_collection(path):
        collection = NeuralCollection(path)
        return collection if item is None else collection[item]
    if is_pack(path):
        if item is None:
            raise TypeError(f"{path} is a pack: name the item, neurep.load(path, item)")
        with PackReader(path) as pack:
            return pack.load(item)
    if item is not None:
        raise TypeError(f"{path} is a single .nrep file: it takes no item")
    return NeuralDatum.from_file(path)


def open(path: str | os.PathLike) -> NrepReader:
    """Read only a file's metadata: ``neurep.open(p).metadata``; no weights are read."""
    return open_nrep(path)
