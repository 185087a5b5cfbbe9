"""``neurep decode IN.nrep -o OUT.png|.tif|.npy``: decode a ``.nrep`` file to a plain file.

Images go to PNG (8-bit gray/gray+alpha/RGB/RGBA, 16-bit gray, 1-bit) or TIFF (also 32-bit
integer and float gray); anything, at its exact shape and dtype, to ``.npy``. Image tensors
(``CxHxW``) are written ``HxWxC``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from neurep.cli._common import (
    PROG,
    existing_file,
    output_path,
    parse_args,
    run_command,
)
from neurep.cli._writers import OUTPUT_SUFFIXES, write_decoded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} decode",
        description="Decode a .nrep file and write the result as an image or a .npy array.",
    )
    parser.add_argument("input", metavar="IN.nrep", help="the .nrep file")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write: .png, .tif/.tiff (images) or .npy (any datum)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_decode, args)


def _decode(args: argparse.Namespace) -> int:
    import neurep

    source = existing_file(args.input)
    target = output_path(args.output, OUTPUT_SUFFIXES, "output")
    datum = neurep.load(source)
    modality = (datum.metadata.get("modality") or {}).get("name")
    decoded = datum.decode()
    write_decoded(decoded, target, channels_first=modality == "image")
    if not args.quiet:
        shape = tuple(getattr(decoded, "shape", ())) or getattr(decoded, "size", "")
        dtype = getattr(decoded, "dtype", None) or getattr(decoded, "mode", "")
        print(f"{source} -> {target} ({type(decoded).__name__} {shape} {dtype})")
    return 0
