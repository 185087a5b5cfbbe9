"""``neurep info IN.nrep [--json]``: what a ``.nrep`` file holds, read from its metadata only.
``neurep info data.h5 [ITEM]``: a pack's summary, or one of its items.
``neurep info COLLECTION [ITEM]``: a collection's summary, or one item's record.

Every file: modality and configuration, decoder, weights, embedding, bytes (and bpp for
images and video), quality, fit settings. A video adds its frames, rate, size and source; a
3-D shape (mesh, points, voxels) its grid, fill, pitch, world bounds, the input's counts,
bits per voxel, and IoU, Chamfer-L1, F-score and occupancy PSNR (bpp does not apply).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from neurep.cli._common import (
    PROG,
    CommandError,
    existing_file,
    json_safe,
    parse_args,
    run_command,
)
from neurep.cli._summary import derive, describe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} info",
        description="Summarise a .nrep file: modality, original shape and dtype, decoder and "
        "parameter count, embedding, file bytes, bpp, precision, measured quality, fit "
        "settings; for a video also frames, fps, resolution, duration, per-frame PSNR and "
        "the source's codec, pixel format, frame range and ignored streams; for a 3-D shape "
        "its grid, fill, pitch, world bounds, source vertices/faces or points, bits per voxel, "
        "IoU, Chamfer-L1, F-score and occupancy PSNR. Reads the metadata only, never the "
        "weights.",
    )
    parser.add_argument("input", metavar="IN.nrep", help="the .nrep file, or a pack (.h5)")
    parser.add_argument(
        "item",
        nargs="?",
        default=None,
        help="in a pack (neurep pack): the item to describe, by name or position; without "
        "it, the pack's summary (items, files, bytes, modalities, mean PSNR)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: the derived fields (file_bytes, bpp, psnr, ms_ssim, 'video': "
        "frames, fps, fps_decimal, width, height, duration_s, ...; 'shape': grid_shape, fill, "
        "pitch, bounds, vertices, faces, points, iou, chamfer_l1, f_score, ...; each null "
        "where it does not apply) and the full 'metadata'",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_info, args)


def _info(args: argparse.Namespace) -> int:
    import neurep
    from neurep.collection import is_collection
    from neurep.data.packs import PackReader, is_pack

    if is_collection(args.input):
        return _collection_summary(args.input, args.item, args.json)
    path = existing_file(args.input)
    if is_pack(path):
        with PackReader(path) as pack:
            if args.item is None:
                return _pack_summary(path, pack, args.json)
            item = int(args.item) if args.item.isdigit() else args.item
            try:
                position = pack.position(item)
            except (KeyError, IndexError) as error:
                raise CommandError(str(error).strip("'\"")) from None
            metadata = pack.load(position).metadata
            file_bytes = len(pack.read_bytes(position))
            path = f"{path}:{pack.names[position]}"
    elif args.item is not None:
        raise CommandError(f"{path} is a .nrep file, not a pack: it has no items")
    else:
        metadata, file_bytes = _read_metadata(neurep.open(path))
    derived = derive(metadata, file_bytes)
    if args.json:
        report = {"file": str(path), **derived, "metadata": metadata}  # a pack item: PACK:ITEM
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
    else:
        print("\n".join(describe(path, metadata, derived)))
    return 0


def _pack_summary(path: Any, pack: Any, as_json: bool) -> int:
    """Print a pack's items, files, bytes, modalities and mean PSNR (from its index rows)."""
    records = [pack.record(index) for index in range(len(pack))]
    modalities: dict[str, int] = {}
    for record in records:
        name = str(record.get("modality") or "?")
        modalities[name] = modalities.get(name, 0) + 1
    psnrs = [
        r["quality"]["psnr"]
        for r in records
        if isinstance(r.get("quality"), dict) and isinstance(r["quality"].get("psnr"), float)
    ]
    report = {
        "file": str(path),
        "items": len(pack),
        "files": len(pack.files),
        "file_bytes": path.stat().st_size,
        "modalities": modalities,
        "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None,
    }
    if as_json:
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
        return 0
    kinds = ", ".join(f"{count} {name}" for name, count in sorted(modalities.items()))
    psnr = f"{report['mean_psnr']:.2f} dB" if psnrs else "not recorded"
    print(f"{path}: neurep pack")
    print(f"  items      {len(pack)} ({kinds or 'none'})")
    print(f"  files      {len(pack.files)}, {report['file_bytes']:,} bytes in all")
    print(f"  mean PSNR  {psnr}")
    print(f"  names      {', '.join(pack.names[:3])}{', ...' if len(pack) > 3 else ''}")
    return 0


def _collection_summary(folder: str, item: str | None, as_json: bool) -> int:
    """Print a collection's items, files, bytes and quality, or one item's record."""
    from neurep.collection import NeuralCollection

    collection = NeuralCollection(folder)
    if item is not None:
        if not item.lstrip("-").isdigit():
            raise CommandError(f"{folder}: a collection's items are named by position here")
        try:
            record = collection.record(int(item))
        except IndexError as error:
            raise CommandError(str(error)) from None
        print(json.dumps(json_safe(record), indent=None if not as_json else 2, allow_nan=False))
        return 0
    files = collection.files()
    shard_bytes = sum(path.stat().st_size for path in files["shards"])
    psnrs = [
        p for i in range(len(collection)) if isinstance(p := collection.record(i)["psnr"], float)
    ]
    model = collection.model_metadata
    report = {
        "collection": str(folder),
        "items": len(collection),
        "shards": len(files["shards"]),
        "model_bytes": files["model"].stat().st_size,
        "shard_bytes": shard_bytes,
        "bytes_per_item": shard_bytes / len(collection) if len(collection) else None,
        "modality": model["modality"]["name"],
        "item_shape": model["signal"]["item_shape"],
        "embedding_shape": model["embedding"]["item_shape"],
        "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None,
        "fit": collection.fit_record,
    }
    if as_json:
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
        return 0
    psnr = f"{report['mean_psnr']:.2f} dB" if psnrs else "not recorded"
    per_item = report["bytes_per_item"]
    print(f"{folder}: neurep collection ({report['modality']}, items {report['item_shape']})")
    print(f"  items      {len(collection)} in {report['shards']} shards")
    print(f"  embedding  {report['embedding_shape']} uint8 codes an item")
    print(
        f"  bytes      model {report['model_bytes']:,}, shards {shard_bytes:,}"
        + (f" ({per_item:.1f} an item)" if per_item is not None else "")
    )
    print(f"  mean PSNR  {psnr}")
    fit = report["fit"]
    print(
        f"  model fit  {fit.get('steps')} steps on {fit.get('train_items')} items, "
        f"{fit.get('wall_time_s')} s"
    )
    return 0


def _read_metadata(reader: Any) -> tuple[dict[str, Any], int]:
    """The reader's metadata and file size, closing the reader if it can be closed."""
    closer = reader if hasattr(reader, "__exit__") else contextlib.nullcontext(reader)
    with closer:
        return reader.metadata, int(reader.nbytes)
