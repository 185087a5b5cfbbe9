"""``neurep decode IN.nrep -o OUT``: decode a ``.nrep`` file to a plain file (or folder).

Images go to PNG (8-bit gray/gray+alpha/RGB/RGBA, 16-bit gray, 1-bit) or TIFF (also 32-bit
integer and float gray); anything, at its exact shape and dtype, to ``.npy``. Image tensors
(``CxHxW``) are written ``HxWxC``.

Video goes to a video file (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``, ``.avi``: H.264;
``.webm``: VP9; visually lossless) at the datum's original frame rate, or to a folder of
``frame_00000.png``... (``-o frames/``: a path ending in a separator, an existing folder, or
a path without a suffix), or to ``.npy`` (``TxHxWxC``, torch clips ``TxCxHxW``, exact dtype).
Video files and PNG frames are 8-bit: uint8 clips are written as they are; uint16 and float
clips are mapped linearly from the value range the datum records (0..65535 for uint16, the
clip's own min..max for floats) to 0..255 and rounded. ``--frames A:B`` decodes only those
frames (only their embedding rows are read). Every output is written atomically.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurep.cli._common import (
    PROG,
    CommandError,
    existing_file,
    frame_range,
    names_a_folder,
    output_path,
    parse_args,
    run_command,
)
from neurep.cli._summary import fps_text, frame_width_height
from neurep.cli._writers import (
    OUTPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    video_frames,
    write_decoded,
    write_frame_folder,
    write_video_file,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} decode",
        description="Decode a .nrep file and write the result as an image, a video, a folder "
        "of PNG frames or a .npy array. Video files and PNG frames hold 8 bits a sample: "
        "uint16 and float clips are scaled from their recorded value range to 0..255 "
        "(write .npy to keep the exact values).",
    )
    parser.add_argument("input", metavar="IN.nrep", help="the .nrep file")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write: .png, .tif/.tiff (images); .mp4/.m4v/.mov/.mkv/.avi/.webm or a "
        "folder for PNG frames (frames/: ends in a separator, exists, or has no suffix) "
        "(video); .npy (any datum)",
    )
    parser.add_argument(
        "--frames",
        type=frame_range,
        default=None,
        metavar="A:B",
        help="video only: decode frames A to B-1 (either side may be empty: 10:, :50)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write PNG frames into a folder that already holds files, replacing its "
        "frame_*.png (files are always replaced)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_decode, args)


def _decode(args: argparse.Namespace) -> int:
    import neurep

    source = existing_file(args.input)
    datum = neurep.load(source)  # the metadata only: weights are read on decoding
    modality = (datum.metadata.get("modality") or {}).get("name")
    kind, target = _output(args.output, source, modality)
    if modality == "video":
        return _decode_video(datum, source, kind, target, args)
    if args.frames is not None:
        raise CommandError(
            f"{source}: --frames picks frames of a video; this file holds {_a(modality)} datum"
        )
    decoded = datum.decode()
    write_decoded(decoded, target, channels_first=modality == "image")
    if not args.quiet:
        print(f"{source} -> {target} ({_array_text(decoded)})")
    return 0


def _output(path_text: str, source: Path, modality: Any) -> tuple[str, Path]:
    """What to write and where: ``("frames", folder)``, ``("video" | "npy" | "image", file)``;
    CommandError for an output this datum cannot be written as, or a missing folder."""
    path = Path(path_text)
    suffix = path.suffix.lower()
    is_video = modality == "video"
    if names_a_folder(path_text) or path.is_dir() or (is_video and not suffix):
        if not is_video:
            raise CommandError(
                f"{path_text}: a folder output (PNG frames) is for video data; {source} holds "
                f"{_a(modality)} datum (write {', '.join(OUTPUT_SUFFIXES)})"
            )
        if not path.parent.is_dir():
            raise CommandError(f"{path.parent}: no such directory for the output")
        return "frames", path
    if not is_video:
        if suffix in VIDEO_SUFFIXES:
            raise CommandError(
                f"{path}: only video data can be written as {suffix}; {source} holds "
                f"{_a(modality)} datum (write {', '.join(OUTPUT_SUFFIXES)})"
            )
        target = output_path(path_text, OUTPUT_SUFFIXES, "output")
        return ("npy" if suffix == ".npy" else "image"), target
    allowed = (*VIDEO_SUFFIXES, ".npy")
    if suffix not in allowed:
        raise CommandError(
            f"{path}: a video is written as {', '.join(allowed)} or as a folder of PNG "
            "frames (a path ending in /), not as " + suffix
        )
    return ("npy" if suffix == ".npy" else "video"), output_path(path_text, allowed, "output")


def _decode_video(
    datum: Any, source: Path, kind: str, target: Path, args: argparse.Namespace
) -> int:
    adapter = datum.adapter  # load() checked it against the signal
    config = adapter.configuration
    total = datum.num_items
    chosen = range(total)
    if args.frames is not None:
        start, stop = args.frames
        chosen = chosen[start:stop]
        if len(chosen) == 0:
            raise CommandError(
                f"{source}: frames {start}:{'' if stop is None else stop} select none of its "
                f"{total} frames"
            )
    decoded = datum.decode(None if len(chosen) == total else slice(chosen.start, chosen.stop))
    scaled = False
    if kind == "npy":
        write_decoded(decoded, target, channels_first=False)
    else:
        frames, scaled = video_frames(
            decoded, channels_first=config.kind == "torch", value_range=adapter.value_range
        )
        if kind == "video":
            write_video_file(frames, target, config.fps)
        else:
            write_frame_folder(frames, target, overwrite=args.overwrite)
    if not args.quiet:
        width, height = frame_width_height(config.kind, config.shape)
        parts = [
            f"{len(chosen):,} frames"
            + ("" if len(chosen) == total else f" ({chosen.start}:{chosen.stop} of {total:,})"),
            f"{width}x{height}",
            fps_text(config.fps),
        ]
        if kind == "npy":
            parts.append(_array_text(decoded))
        elif kind == "frames":
            parts.append(f"{len(chosen):,} PNG files")
        if scaled:
            parts.append(f"{config.dtype} scaled to 8 bits")
        print(f"{source} -> {target}{'/' if kind == 'frames' else ''}: {', '.join(parts)}")
    return 0


def _array_text(decoded: Any) -> str:
    shape = tuple(getattr(decoded, "shape", ())) or getattr(decoded, "size", "")
    dtype = getattr(decoded, "dtype", None) or getattr(decoded, "mode", "")
    return f"{type(decoded).__name__} {shape} {dtype}"


def _a(modality: Any) -> str:
    """``an image`` / ``an array`` / ``a hologram``."""
    name = str(modality)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
