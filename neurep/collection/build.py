"""Making and growing collections: :func:`fit_collection` and :func:`append`."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neurep.collection import _model
from neurep.collection._files import (
    MODEL_FILE,
    SHARDS,
    file_entry,
    is_collection,
    write_manifest,
    write_model,
    write_shard,
)
from neurep.collection._items import (
    ItemReader,
    as_bytes_if_exact,
    checked_names,
    default_names,
)
from neurep.collection._schema import MAX_SHARD_ITEMS
from neurep.collection.collection import NeuralCollection
from neurep.errors import InputError
from neurep.modalities.registry import resolve

#: Items per shard by default: a random read then checks and holds about a quarter of a
#: megabyte at 256 bytes an item.
SHARD_ITEMS = 1024
#: About how many steps the shared model trains for when ``epochs`` is not given.
TRAINING_STEPS = 1500
#: Extra refinement steps an item below ``quality_floor`` gets, at most.
FLOOR_REFINE_STEPS = 200


def fit_collection(
    items: Sequence[Any],
    out: str | os.PathLike,
    *,
    modality: str | None = None,
    names: Sequence[str] | None = None,
    embedding_channels: int = 16,
    projection: str = "conv",
    size: tuple[int, int] | None = None,
    fit_to: str = "resize",
    train_items: int | None = None,
    epochs: int | None = None,
    batch: int = 32,
    learning_rate: float = 3e-3,
    refine_steps: int = 0,
    quality_floor: float | None = None,
    shard_items: int = SHARD_ITEMS,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> NeuralCollection:
    """Fit one shared model to ``items`` and store every item as its embedding, in ``out``.

    Args:
        items: objects :func:`neurep.fit` takes (paths, arrays, images) of one modality,
            each a single item of one shape.
        out: the collection folder to create (it must not exist, or be empty).
        modality: as :func:`neurep.fit` (None: detected).
        names: one unique name per item (default :func:`default_names`).
        embedding_channels: E, the code's channels (a 64x64 or 128x128 image's code is
            E x 4 x 4 bytes).
        projection: LPNet's per-level projection, ``"conv"`` (LPNet-Conv, the default:
            it generalises better to unseen items) or ``"s3k"`` (RESULTS.md, "Collections").
        size: (width, height): bring every image item to this size first, by
            ``fit_to="resize"`` (bicubic) or ``"crop"`` (the centre); None: items must
            share one size already. Recorded in the model file, and used by
            :func:`append`.
        train_items: fit the shared model on this many items drawn at random (seeded),
            else on all of them; every item is embedded either way. The training items
            are held in memory while the model trains (as bytes for 8-bit data).
        epochs: passes over the training items (default: about :data:`TRAINING_STEPS`
            steps' worth, at least 4 passes).
        batch: training items per step.
        refine_steps: Adam steps on each item's embedding with the decoder frozen.
        quality_floor: PSNR (dB): items below it are refined up to
            :data:`FLOOR_REFINE_STEPS` more steps; those still below are warned about
            (each item's record keeps its PSNR and refinement steps).
        shard_items: items per shard.
        seed, progress, device: as :func:`neurep.fit`.

    Returns:
        The :class:`NeuralCollection` written.
    """
    items = list(items)
    if not items:
        raise InputError("fit_collection needs at least one item")
    if embedding_channels < 1 or batch < 1 or refine_steps < 0:
        raise InputError("embedding_channels and batch must be >= 1, refine_steps >= 0")
    if projection not in ("conv", "s3k"):
        raise InputError(f"projection must be 'conv' or 's3k', not {projection!r}")
    _check_shard_items(shard_items)
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not an empty folder (neurep.append adds items)")
    names = checked_names(default_names(items) if names is None else names, len(items), set())
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if min(size) < 1 or fit_to not in ("resize", "crop"):
            raise InputError("size must be (width, height) >= 1 and fit_to 'resize' or 'crop'")
    reader = ItemReader(modality, None, size, fit_to)
    chosen = _training_indices(len(items), train_items, seed)
    signals = [
        as_bytes_if_exact(reader.read(items[i], names[i])[1])
        for i in _progress(chosen, progress, "reading")
    ]
    training = torch.cat(signals)
    adapter_cls = resolve(reader.last_object, reader.modality)
    if epochs is None:
        epochs = max(4, round(TRAINING_STEPS / max(1, -(-len(chosen) // batch))))
    preset = _model.collection_preset(
        embedding_channels,
        projection=projection,
        epochs=epochs,
        batch=min(batch, len(chosen)),
        learning_rate=learning_rate,
    )
    model = _model.train(
        training, preset, loss=adapter_cls.loss, seed=seed, progress=progress, device=device
    )
    del training, signals
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        (folder / SHARDS).mkdir()
        template = dict(reader.template)
        configuration = dict(template["configuration"])
        metadata = _model_metadata(model, template["name"], configuration)
        if size is not None:
            metadata["items"] = {"size": list(size), "fit_to": fit_to}
        write_model(
            folder / MODEL_FILE,
            metadata,
            model.tensors(),
        )
        write_manifest(folder, file_entry(folder, MODEL_FILE), [])
        _embed_into(
            folder,
            model,
            items,
            names,
            reader,
            [],
            refine_steps,
            quality_floor,
            shard_items,
            progress,
        )
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for child in folder.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return NeuralCollection(folder)


def append(
    collection: str | os.PathLike | NeuralCollection,
    items: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    refine_steps: int = 0,
    quality_floor: float | None = None,
    shard_items: int = SHARD_ITEMS,
    progress: bool = True,
) -> NeuralCollection:
    """Embed ``items`` with the collection's shared model and add them at its end, in new
    shards: the files already there are not rewritten (the manifest is replaced, atomically,
    after each new shard). Returns the collection reopened. Options as :func:`fit_collection`.
    """
    folder = Path(collection.path if isinstance(collection, NeuralCollection) else collection)
    if not is_collection(folder):
        raise InputError(f"{folder}: not a collection (no collection.json)")
    existing = NeuralCollection(folder)
    items = list(items)
    _check_shard_items(shard_items)
    names = checked_names(
        default_names(items) if names is None else names, len(items), set(existing.names)
    )
    model = existing.model
    metadata = existing.model_metadata
    sizing = metadata.get("items", {})
    reader = ItemReader(
        metadata["modality"]["name"],
        tuple(model.item_shape),
        tuple(sizing["size"]) if "size" in sizing else None,
        sizing.get("fit_to", "resize"),
    )
    reader.template = metadata["modality"]
    shards = list(existing._manifest["shards"])
    if items:
        _embed_into(
            folder,
            model,
            items,
            names,
            reader,
            shards,
            refine_steps,
            quality_floor,
            shard_items,
            progress,
        )
    return NeuralCollection(folder)


def _check_shard_items(shard_items: int) -> None:
    if not 1 <= shard_items <= MAX_SHARD_ITEMS:
        raise InputError(f"shard_items must be 1 to {MAX_SHARD_ITEMS}, not {shard_items}")


def _training_indices(count: int, train_items: int | None, seed: int) -> list[int]:
    if train_items is None or train_items >= count:
        return list(range(count))
    if train_items < 1:
        raise InputError(f"train_items must be at least 1, not {train_items}")
    return sorted(
        np.random.default_rng(seed).choice(count, size=train_items, replace=False).tolist()
    )


def _progress(iterable, progress: bool, what: str, total: int | None = None):
    return tqdm(
        iterable,
        desc=f"neurep collection: {what}",
        disable=not progress,
        leave=False,
        total=total,
        unit="item",
    )


def _model_metadata(model: _model.SharedModel, modality: str, configuration: dict) -> dict:
    return {
        "modality": {"name": modality, "configuration": configuration},
        "signal": {"item_shape": list(model.item_shape), "loss": model.loss},
        "decoder": model.decoder.to_config(),
        "encoder": model.encoder.to_config(),
        "embedding": {
            "item_shape": list(model.embedding_shape),
            "scale": [float(v) for v in model.scale],
            "offset": [float(v) for v in model.offset],
        },
        "weights": {"quantization": model.quantization},
        "fit": model.fit,
    }


def _embed_into(
    folder: Path,
    model: _model.SharedModel,
    items: list[Any],
    names: list[str],
    reader: ItemReader,
    shards: list[dict],
    refine_steps: int,
    quality_floor: float | None,
    shard_items: int,
    progress: bool,
) -> None:
    """Embed ``items`` shard by shard; after each shard is written, the manifest lists it."""
    model_entry = file_entry(folder, MODEL_FILE)
    bar = _progress(None, progress, "embedding", total=len(items))
    template = reader.template["configuration"]
    for first in range(0, len(items), shard_items):
        part = range(first, min(first + shard_items, len(items)))
        rows = _embed_rows(
            model,
            [items[i] for i in part],
            [names[i] for i in part],
            reader,
            refine_steps,
            quality_floor,
            bar,
        )
        relative = f"{SHARDS}/{len(shards):06d}.nreps"
        varying = sorted(
            {k for row in rows for k, v in row["config"].items() if template.get(k, _MISSING) != v}
            | {k for row in rows for k in template if k not in row["config"]}
        )
        metadata = {
            "model_sha256": model_entry["sha256"],
            "items": len(rows),
            "names": [row["name"] for row in rows],
            "quality": {
                "psnr": [row["psnr"] for row in rows],
                "ms_ssim": [row["ms_ssim"] for row in rows],
            },
            "refine_steps": [row["refine_steps"] for row in rows],
        }
        if varying:
            metadata["item_modality"] = {k: [row["config"].get(k) for row in rows] for k in varying}
        write_shard(folder / relative, metadata, np.stack([row["codes"] for row in rows]))
        shards.append(file_entry(folder, relative, items=len(rows)))
        write_manifest(folder, model_entry, shards)
    bar.close()


_MISSING = object()


def _embed_rows(model, objs, names, reader, refine_steps, quality_floor, bar) -> list[dict]:
    """One shard's rows: codes, quality and configuration of each item, a pass at a time."""
    rows = []
    for first in range(0, len(objs), _model.ITEMS_PER_PASS):
        batch = list(range(first, min(first + _model.ITEMS_PER_PASS, len(objs))))
        read = [reader.read(objs[i], names[i]) for i in batch]
        originals = [reader.sized(objs[i], names[i]) for i in batch]  # what quality compares
        adapters = [adapter for adapter, _ in read]
        signal = torch.cat([s for _, s in read])
        embedding = model.refine(model.encode(signal), signal, refine_steps)
        codes = model.quantize(embedding)
        quality = _measure(model, codes, originals, adapters)
        steps = [refine_steps] * len(batch)
        if quality_floor is not None:
            codes, quality, steps = _lift_below_floor(
                model,
                embedding,
                signal,
                codes,
                quality,
                steps,
                quality_floor,
                originals,
                adapters,
                [names[i] for i in batch],
            )
        for j, i in enumerate(batch):
            rows.append(
                {
                    "name": names[i],
                    "codes": codes[j],
                    "psnr": _finite(quality[j]["psnr"]),
                    "ms_ssim": _finite(quality[j]["ms_ssim"]),
                    "refine_steps": steps[j],
                    "config": read[j][0].to_config()["configuration"],
                }
            )
        bar.update(len(batch))
    return rows


def _measure(model, codes, objs, adapters) -> list[dict]:
    decoded = model.decode(model.dequantize(codes))
    return [
        adapter.quality(obj, adapter.from_signal(decoded[j : j + 1]))
        for j, (obj, adapter) in enumerate(zip(objs, adapters, strict=True))
    ]


def _lift_below_floor(
    model, embedding, signal, codes, quality, steps, floor, objs, adapters, names
):
    below = [j for j, q in enumerate(quality) if q["psnr"] is not None and q["psnr"] < floor]
    if not below:
        return codes, quality, steps
    refined = model.refine(embedding[below], signal[below], FLOOR_REFINE_STEPS)
    new_codes = model.quantize(refined)
    new_quality = _measure(model, new_codes, [objs[j] for j in below], [adapters[j] for j in below])
    codes = codes.copy()
    for k, j in enumerate(below):
        if new_quality[k]["psnr"] > quality[j]["psnr"]:
            codes[j], quality[j] = new_codes[k], new_quality[k]
            steps[j] += FLOOR_REFINE_STEPS
        if quality[j]["psnr"] < floor:
            warnings.warn(
                f"item {names[j]!r}: PSNR {quality[j]['psnr']:.2f} dB, below the quality floor "
                f"{floor} dB after {steps[j]} refinement steps",
                stacklevel=4,
            )
    return codes, quality, steps


def _finite(value: Any) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 4)
