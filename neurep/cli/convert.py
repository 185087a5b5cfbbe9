"""``neurep convert SOURCE -o OUT_DIR``: fit every item of a folder, glob, list of paths or
HDF5 dataset, one ``.nrep`` per item plus ``OUT_DIR/index.jsonl``; resumable.

With ``--shared-decoder`` it makes a collection instead (:func:`neurep.fit_collection`:
one shared model, every item as its embedding), and ``--append`` adds the items a
collection does not hold yet (:func:`neurep.append`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neurep.cli._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CommandError,
    parse_args,
    positive_int,
    run_command,
)

# The storage precisions neurep.fit takes (neurep.formats.quantize.PRECISIONS; not imported
# here so that --help does not import torch).
PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int7", "int6", "int5", "int4")

EPILOG = """\
SOURCE is a folder (searched recursively for files of every modality neurep knows, by
extension), a quoted glob ('photos/**/*.jpg'), a text file listing one path a line, or an
HDF5 file with --key NAME, whose rows are the items (N x H x W x C images, N x D x H x W
volumes, N x L signals), read one row at a time.

OUT_DIR gets one .nrep per item at the item's relative path (a/b.png -> a/b.nrep; HDF5
rows: NAME/000123.nrep) and index.jsonl, one JSON line per finished item (source, its
sha256, output, bytes, quality, fit seconds, settings hash, neurep version, status "ok" or
"error" with the message).

Rerunning the same command converts only what is missing: a run stopped at any moment
loses no finished item. Items converted before with other settings are left alone (and
named) unless --force. A corrupt item is recorded as an error and the run goes on; the
exit status is then 1.

With --shared-decoder, OUT_DIR is a collection instead: one shared model fitted to the
items (or to --train-items of them), and every item stored as its embedding in shards
(neurep.load(OUT_DIR) reads it). The items must share one modality and shape. An item's
name in the collection is its output path without ".nrep" (a/b.png -> a/b; HDF5 rows:
NAME/000123): relative and unique, where labels may be absolute. --append embeds, with
the collection's model, the items whose names it does not hold yet and skips the others,
so rerunning an interrupted command finishes it; with --shared-decoder it first makes the
collection when OUT_DIR does not hold one (--train-items, --embedding-channels, --epochs
and --seed shape a new collection's model only). Per-item options (--preset, --steps,
--frozen-encoder, --precision, --bpp, --max-bytes, --psnr, --resolution, --fill,
--workers, --dask-local, --scheduler, --batch, --force) are usage errors there.

On a Dask cluster (--scheduler), every worker needs neurep installed and the same paths to
SOURCE and OUT_DIR (a shared folder). Start one with
  dask scheduler --host HOST --port 8786
  dask worker tcp://HOST:8786 --nthreads 1 --nworkers 4     (on each machine)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} convert",
        description="Fit a neural datum to every item of a folder, glob, list of paths or "
        "HDF5 dataset, and save one .nrep per item, with an index; resumable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="folder, glob, list file or HDF5 file")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created)"
    )
    parser.add_argument(
        "--key", default=None, metavar="NAME", help="HDF5 dataset whose rows are the items"
    )
    fit = parser.add_argument_group("fit options (as neurep fit)")
    fit.add_argument("--preset", default=None, help="fitting preset (default: balanced)")
    length = fit.add_mutually_exclusive_group()
    length.add_argument(
        "--steps", type=positive_int, default=None, help="optimisation steps (default: preset's)"
    )
    length.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over a video's frames; with --shared-decoder, over the training items "
        "(default: about 1,500 steps' worth)",
    )
    fit.add_argument(
        "--frozen-encoder",
        action="store_true",
        help="fit the decoder alone to the untrained encoder's embedding (about 2x faster)",
    )
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.add_argument(
        "--modality",
        default=None,
        help="force a modality (image, array, ...); a folder then yields only its files",
    )
    fit.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="storage precision of the decoder weights (default: int8, or chosen by a budget)",
    )
    budget = fit.add_mutually_exclusive_group()
    budget.add_argument("--bpp", type=float, default=None, help="size budget in bits per pixel")
    budget.add_argument(
        "--max-bytes", type=positive_int, default=None, help="size budget in bytes of each file"
    )
    fit.add_argument("--psnr", type=float, default=None, help="quality target in dB")
    fit.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="shapes: voxels a side (default 32); items of other modalities ignore it",
    )
    fit.add_argument(
        "--fill",
        choices=("auto", "solid", "shell"),
        default=None,
        help="meshes: fill watertight ones solid (auto), or force solid or shell",
    )
    fit.add_argument("--device", default=None, help="torch device (default: CUDA when there)")
    where = parser.add_argument_group("where items run (choose one)")
    parallel = where.add_mutually_exclusive_group()
    parallel.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="local worker processes, each with cores/N torch threads (default: 1, this one)",
    )
    parallel.add_argument(
        "--dask-local",
        type=positive_int,
        default=None,
        metavar="N",
        help="start a Dask LocalCluster of N workers on this machine",
    )
    parallel.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="submit to the running Dask scheduler at this address",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        metavar="K",
        help="fit up to K consecutive items of one shape together in a worker, as stacked "
        "independent models (faster for small items; each equals its own fit up to "
        "rounding; default: 1, one at a time)",
    )
    parser.add_argument(
        "--force", action="store_true", help="refit items converted before with other settings"
    )
    shared = parser.add_argument_group("one shared model for all items (a collection; see below)")
    shared.add_argument(
        "--shared-decoder",
        action="store_true",
        help="make OUT_DIR a collection: one shared model, each item stored as its embedding",
    )
    shared.add_argument(
        "--append",
        action="store_true",
        help="add the items the collection in OUT_DIR does not hold yet (by name), skip the rest",
    )
    shared.add_argument(
        "--train-items",
        type=positive_int,
        default=None,
        metavar="N",
        help="fit the shared model on N items drawn at random (seeded; default: all)",
    )
    shared.add_argument(
        "--embedding-channels",
        type=positive_int,
        default=16,
        metavar="E",
        help="channels of each item's code (default: 16; a 64x64 image's code is E x 4 x 4 bytes)",
    )
    shared.add_argument(
        "--refine-steps",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="refine each item's embedding K steps with the decoder frozen (default: 0)",
    )
    shared.add_argument(
        "--quality-floor",
        type=float,
        default=None,
        metavar="DB",
        help="PSNR (dB): items below it get up to 200 more refinement steps",
    )
    shared.add_argument(
        "--shard-items",
        type=positive_int,
        default=None,
        metavar="N",
        help="items per shard file (default: 1024)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no closing summary"
    )
    return parser


#: Options that only make sense fitting one model per item: (argparse dest, flag).
PER_ITEM_OPTIONS = (
    ("preset", "--preset"),
    ("steps", "--steps"),
    ("frozen_encoder", "--frozen-encoder"),
    ("precision", "--precision"),
    ("bpp", "--bpp"),
    ("max_bytes", "--max-bytes"),
    ("psnr", "--psnr"),
    ("resolution", "--resolution"),
    ("fill", "--fill"),
    ("workers", "--workers"),
    ("dask_local", "--dask-local"),
    ("scheduler", "--scheduler"),
    ("batch", "--batch"),
    ("force", "--force"),
)
#: Options that only make sense for a collection: (argparse dest, flag, default).
COLLECTION_OPTIONS = (
    ("train_items", "--train-items", None),
    ("embedding_channels", "--embedding-channels", 16),
    ("refine_steps", "--refine-steps", 0),
    ("quality_floor", "--quality-floor", None),
    ("shard_items", "--shard-items", None),
)


def non_negative_int(text: str) -> int:
    """argparse type: an integer of zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    problem = _usage_problem(args)
    if problem is not None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.shared_decoder or args.append:
        from neurep.cli._convert_collection import convert_collection

        return run_command(convert_collection, args)
    return run_command(_convert, args)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with this combination of options, or None."""
    from neurep.collection import is_collection

    if args.append and not args.shared_decoder and not is_collection(args.output):
        return (
            f"--append adds items to a collection and {args.output} does not hold one; "
            "add --shared-decoder to make it"
        )
    if args.shared_decoder or args.append:
        given = [
            flag for dest, flag in PER_ITEM_OPTIONS if getattr(args, dest) not in (None, False)
        ]
        if given:
            return (
                f"{', '.join(given)}: per-item option{'s' if len(given) > 1 else ''}, not "
                "used with a shared decoder (--shared-decoder/--append)"
            )
        return None
    given = [flag for dest, flag, default in COLLECTION_OPTIONS if getattr(args, dest) != default]
    if given:
        return f"{', '.join(given)}: only used with --shared-decoder (or --append)"
    return None


def _convert(args: argparse.Namespace) -> int:
    from neurep.conversion import convert
    from neurep.fitting.presets import PRESETS

    args.preset = "balanced" if args.preset is None else args.preset
    if args.preset not in PRESETS:
        raise CommandError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset] if args.frozen_encoder else args.preset
    if args.frozen_encoder:
        preset = preset.with_overrides(train_encoder=False)
    report = convert(
        args.source,
        args.output,
        key=args.key,
        workers=args.workers or 1,
        dask_local=args.dask_local,
        scheduler=args.scheduler,
        force=args.force,
        progress=not args.quiet,
        batch=args.batch or 1,
        preset=preset,
        steps=args.steps,
        epochs=args.epochs,
        seed=args.seed,
        modality=args.modality,
        precision=args.precision,
        bpp=args.bpp,
        max_bytes=args.max_bytes,
        psnr=args.psnr,
        device=args.device,
        **{
            name: value
            for name, value in (("resolution", args.resolution), ("fill", args.fill))
            if value is not None
        },
    )
    if not args.quiet:
        print(report.summary())
    failure = report.failure_line()
    if failure is None:
        return EXIT_OK
    print(f"{PROG}: {failure}", file=sys.stderr)
    return EXIT_ERROR
