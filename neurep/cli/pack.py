"""``neurep pack OUT_DIR -o data.h5``: write a converted folder into one HDF5 pack (every
file byte for byte, the index as a table), atomically."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from neurep.cli._common import EXIT_OK, PROG, CommandError, output_path, parse_args, run_command

SUFFIXES = (".h5", ".hdf5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} pack",
        description="Write a folder made by 'neurep convert' (every .nrep, index.jsonl and any "
        "other file) into one HDF5 file, for random access by neurep.load(PACK, item) and "
        "datasets; 'neurep unpack' restores the folder byte for byte.",
    )
    parser.add_argument("folder", metavar="OUT_DIR", help="the converted folder")
    parser.add_argument(
        "-o", "--output", required=True, metavar="PACK", help="the pack to write (.h5, .hdf5)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no closing summary"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_pack, args)


def _pack(args: argparse.Namespace) -> int:
    from neurep.data.packs import PackReader, pack

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CommandError(f"{folder}: no such folder")
    output = output_path(args.output, SUFFIXES, "pack")
    pack(folder, output, progress=not args.quiet)
    if not args.quiet:
        with PackReader(output) as reader:
            size = output.stat().st_size
            print(
                f"packed {len(reader)} items ({len(reader.files)} files) into {output} "
                f"({size:,} bytes)"
            )
    return EXIT_OK
