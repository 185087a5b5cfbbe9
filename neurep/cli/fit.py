"""``neurep fit INPUT -o OUT.nrep``: fit a neural datum to a file (or a folder of video
frames) and save it.

The modality is guessed from the file (``--modality`` forces one): images, ``.npy`` arrays,
video files, meshes (.obj .ply .stl .off .glb .gltf) and point clouds (.pcd .xyz, .ply
without faces). A ``.npy`` file is read by the array modality, or with ``--modality voxels``
(a bool ``D x H x W`` grid) or ``--modality points`` (``N x 3``) as a shape. Read options
(``--frames``/``--size`` for video, ``--resolution``/``--fill`` for shapes) reach
:func:`neurep.fit` only when given; a modality that does not take one refuses it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from neurep.cli._common import (
    PROG,
    CommandError,
    existing_file,
    frame_range,
    frame_size,
    output_path,
    parse_args,
    positive_int,
    run_command,
)
from neurep.cli._summary import derive, fps_text, quality_text, shape_counts_text

PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int7", "int6", "int5", "int4")
#: neurep.modalities._shape_grid.FILL_CHOICES (not imported: building the parser stays light).
FILLS = ("auto", "solid", "shell")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} fit",
        description="Fit a small network to one datum (an image file, a .npy array, a video "
        "file, a folder of frame images with --modality video, a mesh or a point cloud) and "
        "save its neural form as a .nrep file.",
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="image (PNG/JPEG/TIFF/WebP), .npy file, video file (mp4/mov/mkv/avi/webm/...), "
        "a folder of frame images (with --modality video), mesh (.obj/.ply/.stl/.off/.glb/"
        ".gltf) or point cloud (.pcd/.xyz, .ply without faces)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.nrep", help="file to write")
    parser.add_argument("--preset", default="balanced", help="fitting preset (default: balanced)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="optimisation steps (default: the preset's; replaces a video preset's epochs)",
    )
    length.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over the frames of a batched (video) fit, instead of the preset's; "
        "an image has one item, so an epoch is one step",
    )
    parser.add_argument(
        "--frozen-encoder",
        action="store_true",
        help="fit the decoder alone to the untrained encoder's embedding (about 2x faster)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--modality",
        default=None,
        help="force a modality (image, array, video, mesh, points, voxels) instead of "
        "guessing; a .npy file of a bool DxHxW grid needs --modality voxels (else it is an "
        "array), of Nx3 points --modality points",
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="storage precision of the decoder weights (default: int8, or chosen by a budget)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--bpp", type=float, default=None, help="size budget in bits per pixel (real file bytes)"
    )
    budget.add_argument(
        "--max-bytes", type=positive_int, default=None, help="size budget in bytes of the file"
    )
    parser.add_argument(
        "--psnr", type=float, default=None, help="quality target in dB (stops early, int8 storage)"
    )
    video = parser.add_argument_group("video read options")
    video.add_argument(
        "--frames",
        type=frame_range,
        default=None,
        metavar="A:B",
        help="fit source frames A to B-1 only (either side may be empty: 10:, :50)",
    )
    video.add_argument(
        "--size",
        type=frame_size,
        default=None,
        metavar="WxH",
        help="resize every frame to W x H pixels when reading, e.g. 640x360",
    )
    shapes = parser.add_argument_group("3-D shape read options (mesh, points)")
    shapes.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        metavar="N",
        help="voxels a side of the occupancy cube (4 to 256; default 32)",
    )
    shapes.add_argument(
        "--fill",
        default=None,
        choices=FILLS,
        help="mesh only: auto (default) fills watertight meshes solid and keeps open ones as "
        "a surface shell; solid or shell forces one",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return args if isinstance(args, int) else run_command(_fit, args)


def _fit(args: argparse.Namespace) -> int:
    import neurep

    source = _input_path(args.input, args.modality)
    target = output_path(args.output, (".nrep",), "output")
    preset = _preset(args.preset)
    if args.frozen_encoder:
        preset = preset.with_overrides(train_encoder=False)
    # Read options only when given: a modality that takes none (image) refuses them.
    given = (
        ("frames", args.frames),
        ("size", args.size),
        ("resolution", args.resolution),
        ("fill", args.fill),
    )
    options = {name: value for name, value in given if value is not None}
    _check_read_options(source, str(source), args.modality, options)
    datum = neurep.fit(
        str(source),
        modality=args.modality,
        preset=preset,
        steps=args.steps,
        epochs=args.epochs,
        seed=args.seed,
        precision=args.precision,
        bpp=args.bpp,
        max_bytes=args.max_bytes,
        psnr=args.psnr,
        progress=not args.quiet,
        device=args.device,
        **options,
    )
    file_bytes = datum.save(target)
    if not args.quiet:
        print(f"{source} -> {target}: {_summary(datum.metadata, file_bytes)}")
    return 0


def _summary(metadata: dict, file_bytes: int) -> str:
    """What the fit made: size (and bpp where it applies), the clip or the shape's grid and
    counts, and quality (a shape's IoU, Chamfer-L1 and F-score before its occupancy PSNR)."""
    derived = derive(metadata, file_bytes)
    size = f"{file_bytes:,} bytes"
    if derived["bpp"] is not None:
        size += f", {derived['bpp']:.4f} bpp"
    video, shape = derived["video"], derived["shape"]
    if video is not None:
        size = (
            f"{video['frames']:,} frames {video['width']}x{video['height']} at "
            f"{fps_text(video['fps'])}, {size}"
        )
    if shape is not None:
        size = (
            f"{shape['modality']} of {shape_counts_text(shape)}, {shape['grid']} grid "
            f"({shape['fill']}), {size}"
        )
    return f"{size}, {quality_text(metadata.get('quality'), shape=shape is not None)}"


def _check_read_options(source: Path, obj, modality: str | None, options: dict) -> None:
    """CommandError naming the flags the modality that reads ``obj`` does not take (an
    input no modality reads is left to :func:`neurep.fit` to report)."""
    from neurep.errors import NeurepError
    from neurep.modalities import resolve

    try:
        adapter = resolve(obj, modality)
    except NeurepError:
        return
    unknown = [name for name in options if name not in adapter.read_options]
    if unknown:
        flags = " and ".join(f"--{name}" for name in unknown)
        takes = ", ".join(f"--{name}" for name in adapter.read_options) or "none"
        raise CommandError(
            f"{source}: {flags} {'does' if len(unknown) == 1 else 'do'} not apply to "
            f"{adapter.name} input (the {adapter.name} modality takes no option "
            f"{', '.join(map(repr, unknown))}; its read options: {takes})"
        )


def _input_path(path_text: str, modality: str | None) -> Path:
    """The input file, or a folder of frames when the modality is video."""
    path = Path(path_text)
    if path.is_dir():
        if modality == "video":
            return path
        raise CommandError(
            f"{path}: is a folder; to fit its frame images as a video, pass --modality video"
            if modality is None
            else f"{path}: is a folder; only --modality video reads a folder (of frames)"
        )
    return existing_file(path_text)


def _preset(name: str):
    """The preset called ``name``; CommandError naming the presets when there is none."""
    from neurep.fitting.presets import PRESETS

    if name not in PRESETS:
        raise CommandError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
