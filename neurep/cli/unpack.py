"""``neurep unpack data.h5 -o OUT_DIR``: restore a packed folder byte for byte (each file
checked against its sha256), into a new or empty folder."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from neurep.cli._common import EXIT_OK, PROG, existing_file, parse_args, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} unpack",
        description="Restore the folder packed by 'neurep pack', byte for byte. It is built "
        "beside OUT_DIR and renamed into place, so a failure leaves nothing half-written.",
    )
    parser.add_argument("pack", metavar="PACK", help="the pack (.h5)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="the folder (new or empty)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace OUT_DIR even if it holds files"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no closing summary"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_unpack, args)


def _unpack(args: argparse.Namespace) -> int:
    from neurep.data.packs import PackReader, unpack

    source = existing_file(args.pack, "pack")
    with PackReader(source) as reader:
        items, files = len(reader), len(reader.files)
    folder = unpack(source, args.output, force=args.force, progress=not args.quiet)
    if not args.quiet:
        print(f"unpacked {files} files ({items} items) into {folder}")
    return EXIT_OK
