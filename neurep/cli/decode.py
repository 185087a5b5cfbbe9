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
frames (only their embedding rows are read).

3-D shapes (the mesh, points and voxels modalities) go, in world coordinates, to a mesh file
(``.obj``, ``.ply``, ``.stl``, ``.off``, ``.glb``: marching cubes of the decoded occupancy,
through trimesh), a point-cloud file (``.xyz``, ``.pcd``; ``.ply`` for a point-cloud datum:
the occupied voxels' centres), or ``.npy`` (the bool ``D x H x W`` occupancy grid).
``--kind mesh|points|voxels`` picks the decode instead (``--kind points -o p.npy``: an
``N x 3`` float64 array; ``--kind mesh -o m.ply``: a point-cloud datum's mesh). A decode
with nothing occupied has no surface and is refused for mesh and point files.

Every output is written atomically (a temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    MESH_SUFFIXES,
    OUTPUT_SUFFIXES,
    POINT_SUFFIXES,
    SHAPE_FILE_SUFFIXES,
    VIDEO_SUFFIXES,
    video_frames,
    write_decoded,
    write_frame_folder,
    write_mesh,
    write_points,
    write_video_file,
)

#: The modalities whose data are 3-D shapes, and the decodes they give.
SHAPE_MODALITIES = ("mesh", "points", "voxels")
SHAPE_KINDS = ("mesh", "points", "voxels")
#: What each kind of shape decode can be written as.
SHAPE_KIND_SUFFIXES = {
    "mesh": MESH_SUFFIXES,
    "points": (*POINT_SUFFIXES, ".npy"),
    "voxels": (".npy",),
}
SHAPE_OUTPUT_SUFFIXES = tuple(dict.fromkeys((*SHAPE_FILE_SUFFIXES, ".npy")))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} decode",
        description="Decode a .nrep file and write the result as an image, a video, a folder "
        "of PNG frames, a mesh or point-cloud file (3-D shapes) or a .npy array. Video files "
        "and PNG frames hold 8 bits a sample: uint16 and float clips are scaled from their "
        "recorded value range to 0..255 (write .npy to keep the exact values). A shape's mesh "
        "is the marching-cubes surface of its decoded occupancy, in world coordinates.",
    )
    parser.add_argument("input", metavar="IN.nrep", help="the .nrep file")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write: .png, .tif/.tiff (images); .mp4/.m4v/.mov/.mkv/.avi/.webm or a "
        "folder for PNG frames (frames/: ends in a separator, exists, or has no suffix) "
        "(video); .obj/.ply/.stl/.off/.glb (a shape's mesh), .xyz/.pcd (its points; .ply for "
        "a point-cloud datum), .npy (its bool occupancy grid) (3-D shapes); .npy (any datum)",
    )
    parser.add_argument(
        "--frames",
        type=frame_range,
        default=None,
        metavar="A:B",
        help="video only: decode frames A to B-1 (either side may be empty: 10:, :50)",
    )
    parser.add_argument(
        "--kind",
        choices=SHAPE_KINDS,
        default=None,
        help="3-D shapes only: decode to a mesh (.obj/.ply/.stl/.off/.glb), points "
        "(.ply/.xyz/.pcd, or .npy: Nx3 float64) or voxels (.npy: bool grid) instead of what "
        "the output's suffix implies",
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
    if modality in SHAPE_MODALITIES:
        return _decode_shape(datum, source, modality, args)
    if args.kind is not None:
        raise CommandError(
            f"{source}: --kind picks a decode of 3-D shape data ({', '.join(SHAPE_MODALITIES)}); "
            f"this file holds {_a(modality)} datum"
        )
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
        if suffix in SHAPE_FILE_SUFFIXES:
            raise CommandError(
                f"{path}: only 3-D shape data ({', '.join(SHAPE_MODALITIES)}) can be written as "
                f"{suffix}; {source} holds {_a(modality)} datum "
                f"(write {', '.join(OUTPUT_SUFFIXES)})"
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


def _decode_shape(datum: Any, source: Path, modality: str, args: argparse.Namespace) -> int:
    """A mesh, points or voxels datum as a mesh file, a point-cloud file or .npy."""
    if args.frames is not None:
        raise CommandError(
            f"{source}: --frames picks frames of a video; this file holds {_a(modality)} datum"
        )
    kind, target = _shape_output(args.output, source, modality, args.kind)
    decoded = datum.decode(kind=kind)  # trimesh.Trimesh, float64 N x 3, or a bool grid
    if kind == "voxels" or target.suffix.lower() == ".npy":
        write_decoded(np.asarray(decoded), target, channels_first=False)
    else:
        count = len(decoded.faces) if kind == "mesh" else len(decoded)
        if count == 0:
            raise CommandError(
                f"{source}: the decoded occupancy has no voxel at 0.5 or above, so there is "
                f"no {'surface' if kind == 'mesh' else 'point'} to write as {target.suffix} "
                "(fit with more steps, or write .npy for the grid)"
            )
        (write_mesh if kind == "mesh" else write_points)(decoded, target)
    if not args.quiet:
        print(f"{source} -> {target}: {_shape_text(kind, decoded)}")
    return 0


def _shape_output(
    path_text: str, source: Path, modality: str, kind: str | None
) -> tuple[str, Path]:
    """The decode to write (``"mesh" | "points" | "voxels"``) and where; CommandError for a
    suffix that kind cannot be written as."""
    path = Path(path_text)
    suffix = path.suffix.lower()
    if names_a_folder(path_text) or path.is_dir() or suffix not in SHAPE_OUTPUT_SUFFIXES:
        what = "a folder" if names_a_folder(path_text) or path.is_dir() else suffix or "no suffix"
        raise CommandError(
            f"{path_text}: {_a(modality)} datum is written as a mesh ({', '.join(MESH_SUFFIXES)}), "
            f"points ({', '.join(POINT_SUFFIXES)}) or a voxel grid (.npy), not {what}"
        )
    if kind is None:
        kind = _default_shape_kind(suffix, modality)
    elif suffix not in SHAPE_KIND_SUFFIXES[kind]:
        raise CommandError(
            f"{path}: a {kind} decode is written as {', '.join(SHAPE_KIND_SUFFIXES[kind])}, "
            f"not {suffix}"
        )
    return kind, output_path(path_text, SHAPE_OUTPUT_SUFFIXES, "output")


def _default_shape_kind(suffix: str, modality: str) -> str:
    """What a suffix implies: .npy the grid, .xyz/.pcd points, .ply a point-cloud datum's
    points (else a mesh), the other mesh suffixes a mesh."""
    if suffix == ".npy":
        return "voxels"
    if suffix in (".xyz", ".pcd") or (suffix == ".ply" and modality == "points"):
        return "points"
    return "mesh"


def _shape_text(kind: str, decoded: Any) -> str:
    """``mesh, 3,007 vertices, 5,974 faces`` / ``points, 1,234 points`` /
    ``voxels, bool grid 32x32x32, 5,000 occupied``."""
    if kind == "mesh":
        return f"mesh, {len(decoded.vertices):,} vertices, {len(decoded.faces):,} faces"
    if kind == "points":
        return f"points, {len(decoded):,} points"
    shape = "x".join(str(size) for size in decoded.shape)
    return f"voxels, bool grid {shape}, {int(np.count_nonzero(decoded)):,} occupied"


def _array_text(decoded: Any) -> str:
    shape = tuple(getattr(decoded, "shape", ())) or getattr(decoded, "size", "")
    dtype = getattr(decoded, "dtype", None) or getattr(decoded, "mode", "")
    return f"{type(decoded).__name__} {shape} {dtype}"


def _a(modality: Any) -> str:
    """``an image`` / ``an array`` / ``a hologram``."""
    name = str(modality)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
