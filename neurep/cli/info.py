"""``neurep info IN.nrep [--json]``: what a ``.nrep`` file holds, read from its metadata only.

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

from neurep.cli._common import PROG, existing_file, json_safe, parse_args, run_command
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
    parser.add_argument("input", metavar="IN.nrep", help="the .nrep file")
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

    path = existing_file(args.input)
    metadata, file_bytes = _read_metadata(neurep.open(path))
    derived = derive(metadata, file_bytes)
    if args.json:
        report = {"file": str(path), **derived, "metadata": metadata}
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
    else:
        print("\n".join(describe(path, metadata, derived)))
    return 0


def _read_metadata(reader: Any) -> tuple[dict[str, Any], int]:
    """The reader's metadata and file size, closing the reader if it can be closed."""
    closer = reader if hasattr(reader, "__exit__") else contextlib.nullcontext(reader)
    with closer:
        return reader.metadata, int(reader.nbytes)
