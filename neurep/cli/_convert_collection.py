"""``neurep convert --shared-decoder`` / ``--append``: make or grow a collection
(:func:`neurep.fit_collection`, :func:`neurep.append`) from the items of a SOURCE."""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from neurep.cli._common import EXIT_OK, CommandError


def convert_collection(args: argparse.Namespace) -> int:
    """``--shared-decoder`` / ``--append``: make or grow the collection in OUT_DIR."""
    import neurep
    from neurep.collection import is_collection
    from neurep.collection.build import SHARD_ITEMS
    from neurep.conversion.sources import FileItem, find_items

    out = Path(args.output)
    items = find_items(args.source, key=args.key, modality=args.modality, exclude=out)
    names = [collection_name(item.output) for item in items]
    progress = not args.quiet
    shard_items = SHARD_ITEMS if args.shard_items is None else args.shard_items
    exists = is_collection(out)
    if exists and not args.append:
        raise CommandError(
            f"{out}: holds a collection already; add --append to embed the items it lacks"
        )
    if not exists and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{out}: exists and is neither a collection nor an empty folder")

    def objects(chosen):
        # A file item's read() object is its path: pass that without hashing the file.
        return [item.path if isinstance(item, FileItem) else item.read()[0] for item in chosen]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        if exists:
            held = set(neurep.load(out).names)
            todo = [k for k, name in enumerate(names) if name not in held]
            collection = neurep.append(
                out,
                objects([items[k] for k in todo]),
                names=[names[k] for k in todo],
                refine_steps=args.refine_steps,
                quality_floor=args.quality_floor,
                shard_items=shard_items,
                progress=progress,
            )
            action = f"added {len(todo)} items, skipped {len(items) - len(todo)} already there"
        else:
            collection = neurep.fit_collection(
                objects(items),
                out,
                modality=args.modality,
                names=names,
                embedding_channels=args.embedding_channels,
                train_items=args.train_items,
                epochs=args.epochs,
                refine_steps=args.refine_steps,
                quality_floor=args.quality_floor,
                shard_items=shard_items,
                seed=args.seed,
                progress=progress,
                device=args.device,
            )
            action = f"made a collection of {len(items)} items"
        seconds = time.perf_counter() - started
    floor_warnings = [w for w in caught if "below the quality floor" in str(w.message)]
    for warning in caught:
        if warning not in floor_warnings:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if progress:
        print(f"{action} in {out} ({seconds:.1f} s)")
        print(collection_summary(collection, args.quality_floor))
    return EXIT_OK


def collection_name(output: str) -> str:
    """An item's name in a collection: its ``convert`` output path without ``.nrep``."""
    return output[: -len(".nrep")] if output.endswith(".nrep") else output


def collection_summary(collection, quality_floor: float | None) -> str:
    """Items, the shared model's fit time, bytes per item (of the shards), mean PSNR and
    the items below ``quality_floor``."""
    count = len(collection)
    shard_bytes = sum(path.stat().st_size for path in collection.files()["shards"])
    psnrs = [collection.record(i)["psnr"] for i in range(count)]
    known = [p for p in psnrs if p is not None]
    fit_seconds = collection.fit_record.get("wall_time_s")
    parts = [
        f"{count} items",
        "shared model fitted in " + ("?" if fit_seconds is None else f"{fit_seconds:.1f} s"),
        f"{shard_bytes / count:.0f} bytes per item" if count else "0 bytes per item",
        f"mean PSNR {sum(known) / len(known):.2f} dB" if known else "mean PSNR n/a",
    ]
    if quality_floor is not None:
        below = sum(1 for p in known if p < quality_floor)
        parts.append(f"{below} below the quality floor {quality_floor:g} dB")
    return ", ".join(parts)
