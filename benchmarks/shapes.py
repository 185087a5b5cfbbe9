"""3-D shapes: LPNet-S3K and LPNet-Conv on every mesh and point cloud in ../shared/data/meshes.

For each file (sorted) at each resolution (32^3 and 64^3), both encoders are fitted in turn
(``balanced``: LPNet-S3K, then ``balanced-conv``: LPNet-Conv; interleaved per file so machine
load hits both alike), seed 0, default storage precision. Per fit, measured on the saved file:

* IoU, occupancy PSNR, Chamfer-L1 (world units and over the bounding-box diagonal) and F-score
  at one voxel (``metadata["quality"]``), the decoded bounding box's largest miss against the
  input's bounds in voxels, decoder parameters;
* fit seconds (wall clock around ``neurep.fit``, which includes reading and voxelising the
  file and measuring, and the stored training ``wall_time_s``), the ``.nrep`` file's bytes;
* beside them, lossless references: the source file's bytes, and the occupancy grid the datum
  was fitted to, bit-packed (``numpy.packbits``) and bit-packed then zstd level 19.

Writes results/shapes.json (updated after every fit, so an interrupted run keeps what it
measured), results/shapes_gallery.png (at 32^3: original, LPNet-S3K and LPNet-Conv decodes per
file) and results/shapes_iou_bytes.png (IoU against file bytes, lossless grid bytes marked).
Progress and a summary table go to stderr; the summary JSON to stdout. Untimed one-step fits
first (every file once) keep first-use costs (readers, libraries, kernels) out of the timings.

    ./dev bench shapes           # 9 files x 2 resolutions x 2 encoders: 20-40 min on 2 cores
    ./dev bench shapes --quick   # teapot.stl + bun000.ply at 16^3, 5 steps, into a temp dir
    ./dev bench shapes --resolutions 32 --files teapot.stl,spot.obj --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

import neurep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_facts

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "meshes"
RESULTS = REPO / "benchmarks" / "results"
#: preset -> the encoder it fits; pairs compared as S3K minus Conv in the same run.
ENCODERS = {
    "balanced": "LPNet-S3K",
    "balanced-conv": "LPNet-Conv",
    "paper": "LPNet-S3K",
    "paper-conv": "LPNet-Conv",
}
PAIRS = (("balanced", "balanced-conv"), ("paper", "paper-conv"))
QUICK_FILES = ("teapot.stl", "bun000.ply")
#: The acceptance the shapes feature is judged on (at 32^3, default presets).
TARGETS = {"mean_iou": 0.95, "max_fit_seconds": 30.0}
#: Up axis for the pictures, by the formats' conventions (glTF, OBJ, PLY scans: Y up).
UP_AXIS = {".stl": "z", ".pcd": "z"}
MAX_FACES, MAX_POINTS = 30000, 6000  # drawn per panel (random subsets beyond)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- one fit ------------------------------------------------------------------------------


def lossless_grid(datum: neurep.NeuralDatum, path: Path) -> tuple[Any, dict]:
    """The occupancy grid ``datum`` was fitted to (``path`` read again with the datum's
    resolution and fill), with its bit-packed and bit-packed + zstd-19 sizes; also the
    geometry read (for the pictures). ``datum.adapter`` is rebuilt from the metadata, so it
    holds no ``_input`` of its own."""
    adapter, _ = datum.adapter.read_again(str(path))
    geometry, grid, _ = adapter._input  # (geometry, bool (D, H, W), the object read)
    expected = tuple(datum.metadata["modality"]["configuration"]["grid_shape"])
    if grid.shape != expected:
        raise RuntimeError(f"{path.name}: re-read grid {grid.shape} is not the datum's {expected}")
    packed = np.packbits(grid).tobytes()
    return geometry, {
        "occupied_voxels": int(grid.sum()),
        "grid_packbits_bytes": len(packed),
        "grid_zstd_bytes": len(numcodecs.Zstd(level=19).encode(packed)),
        "_grid": grid,
    }


def bounds_of(decoded: Any) -> np.ndarray | None:
    """``[[x, y, z] low, high]`` of a decoded trimesh or ``N x 3`` points; None if empty."""
    points = np.asarray(decoded.vertices if hasattr(decoded, "vertices") else decoded)
    if len(points) == 0:
        return None
    return np.stack([points.min(axis=0), points.max(axis=0)])


def fit_one(path: Path, resolution: int, preset: str, args, workdir: Path) -> dict:
    """Fit ``path`` at ``resolution`` with ``preset``, save it, and measure the file."""
    started = time.perf_counter()
    datum = neurep.fit(
        str(path),
        preset=preset,
        resolution=resolution,
        steps=args.steps,
        seed=args.seed,
        progress=False,
    )
    fit_seconds = time.perf_counter() - started
    saved = workdir / f"{path.stem}.{resolution}.{preset}.nrep"
    file_bytes = datum.save(saved)
    metadata = datum.metadata
    modality = metadata["modality"]["name"]
    config = metadata["modality"]["configuration"]
    geometry, baseline = lossless_grid(datum, path)
    grid = baseline.pop("_grid")
    loaded = neurep.load(saved)  # everything below from the file itself
    decoded = loaded.decode(kind="points" if modality == "points" else "mesh")
    voxels = loaded.decode(kind="voxels")
    box = bounds_of(decoded)
    bbox_error = None
    if box is not None:
        bbox_error = float(np.abs(box - np.asarray(config["bounds"])).max() / config["pitch"])
    union = np.logical_or(voxels, grid).sum()
    quality = metadata["quality"]
    fit = metadata["fit"]
    row = {
        "file": path.name,
        "source_bytes": path.stat().st_size,
        "modality": modality,
        "fill": config["fill"],
        "resolution": resolution,
        "preset": preset,
        "encoder": ENCODERS.get(preset, preset),
        "seed": args.seed,
        "steps": fit["steps"],
        "precision": metadata["weights"]["precision"],
        "fit_seconds": fit_seconds,
        "fit_wall_time_s": fit["wall_time_s"],
        "file_bytes": file_bytes,
        "iou": quality["iou"],
        "occupancy_psnr": quality["occupancy_psnr"],
        "chamfer_l1": quality["chamfer_l1"],
        "chamfer_l1_normalised": quality["chamfer_l1_normalised"],
        "f_score": quality["f_score"],
        # the saved file's voxel decode against the re-read grid: must equal "iou"
        "iou_of_file_against_grid": float(np.logical_and(voxels, grid).sum() / union)
        if union
        else 1.0,
        "bbox_error_voxels": bbox_error,
        "decoder_parameters": fit["decoder_parameters"],
        **baseline,
        "file_over_source": file_bytes / path.stat().st_size,
        "file_over_grid_zstd": file_bytes / baseline["grid_zstd_bytes"],
    }
    row["_shapes"] = {"original": geometry, "decoded": decoded}
    row["_bounds"] = config["bounds"]
    return row


def warm_up(files: list[Path], presets: list[str], resolution: int, seed: int) -> float:
    """Untimed 1-step fits, so that no timed fit pays for first use: every file once with the
    first preset (its reader and the metrics' libraries), the first file with each other."""
    started = time.perf_counter()
    jobs = [(path, presets[0]) for path in files] + [(files[0], p) for p in presets[1:]]
    for path, preset in jobs:
        neurep.fit(
            str(path), preset=preset, resolution=resolution, steps=1, seed=seed, progress=False
        )
    seconds = time.perf_counter() - started
    log(f"warm-up: {len(jobs)} one-step fits at {resolution}^3, {seconds:.1f} s")
    return seconds


# ---- summary ------------------------------------------------------------------------------


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarise(rows: list[dict]) -> dict:
    """Per resolution: each preset's means (and fit-time median / max), S3K minus Conv."""
    summary: dict[str, Any] = {}
    for resolution in sorted({r["resolution"] for r in rows}):
        at = [r for r in rows if r["resolution"] == resolution]
        entry: dict[str, Any] = {}
        for preset in dict.fromkeys(r["preset"] for r in at):
            mine = [r for r in at if r["preset"] == preset]
            entry[preset] = {
                "encoder": mine[0]["encoder"],
                "files": len(mine),
                "mean_iou": _mean(r["iou"] for r in mine),
                "min_iou": min(r["iou"] for r in mine),
                "mean_occupancy_psnr": _mean(r["occupancy_psnr"] for r in mine),
                "mean_chamfer_l1_normalised": _mean(r["chamfer_l1_normalised"] for r in mine),
                "chamfer_missing": sum(r["chamfer_l1_normalised"] is None for r in mine),
                "mean_f_score": _mean(r["f_score"] for r in mine),
                "median_fit_seconds": statistics.median(r["fit_seconds"] for r in mine),
                "max_fit_seconds": max(r["fit_seconds"] for r in mine),
                "median_fit_wall_time_s": statistics.median(r["fit_wall_time_s"] for r in mine),
                "mean_decoder_parameters": _mean(r["decoder_parameters"] for r in mine),
                "mean_file_bytes": _mean(r["file_bytes"] for r in mine),
                "mean_grid_zstd_bytes": _mean(r["grid_zstd_bytes"] for r in mine),
                "mean_grid_packbits_bytes": _mean(r["grid_packbits_bytes"] for r in mine),
                "mean_source_bytes": _mean(r["source_bytes"] for r in mine),
                "files_smaller_than_grid_zstd": sum(
                    r["file_bytes"] < r["grid_zstd_bytes"] for r in mine
                ),
                "max_bbox_error_voxels": max(
                    (r["bbox_error_voxels"] for r in mine if r["bbox_error_voxels"] is not None),
                    default=None,
                ),
            }
        for s3k, conv in PAIRS:
            pairs = [
                (a, b)
                for a in at
                if a["preset"] == s3k
                for b in at
                if b["preset"] == conv and b["file"] == a["file"]
            ]
            if pairs:
                entry[f"s3k_minus_conv_{s3k}"] = {
                    "files": len(pairs),
                    "mean_occupancy_psnr_db": statistics.fmean(
                        a["occupancy_psnr"] - b["occupancy_psnr"] for a, b in pairs
                    ),
                    "mean_iou": statistics.fmean(a["iou"] - b["iou"] for a, b in pairs),
                    "s3k_wins_occupancy_psnr": sum(
                        a["occupancy_psnr"] > b["occupancy_psnr"] for a, b in pairs
                    ),
                }
        summary[str(resolution)] = entry
    at32 = summary.get("32", {})
    if "balanced" in at32:
        s3k, gap = at32["balanced"], at32.get("s3k_minus_conv_balanced")
        summary["acceptance_32"] = {
            "mean_iou_at_least_0.95": s3k["mean_iou"] >= TARGETS["mean_iou"],
            "s3k_ahead_of_conv": None if gap is None else gap["mean_occupancy_psnr_db"] > 0,
            "max_fit_seconds_at_most_30": max(
                at32[p]["max_fit_seconds"] for p in ("balanced", "balanced-conv") if p in at32
            )
            <= TARGETS["max_fit_seconds"],
        }
    return summary


def print_table(summary: dict) -> None:
    log(
        f"{'res':>4} {'encoder':<11} {'preset':<14} {'IoU':>6} {'occPSNR':>7} {'CD-L1/d':>8} "
        f"{'F':>5} {'fit s med/max':>13} {'.nrep B':>8} {'zstd grid B':>11} {'source B':>9}"
    )
    for resolution, entry in summary.items():
        if not resolution.isdigit():
            continue
        for preset, s in entry.items():
            if preset.startswith("s3k_minus_conv"):
                continue
            chamfer = s["mean_chamfer_l1_normalised"]
            log(
                f"{resolution:>4} {s['encoder']:<11} {preset:<14} {s['mean_iou']:6.3f} "
                f"{s['mean_occupancy_psnr']:7.2f} "
                f"{'-' if chamfer is None else f'{chamfer:.4f}':>8} "
                f"{_fmt(s['mean_f_score'], '.3f'):>5} "
                f"{s['median_fit_seconds']:6.1f}/{s['max_fit_seconds']:<6.1f} "
                f"{s['mean_file_bytes']:8.0f} {s['mean_grid_zstd_bytes']:11.0f} "
                f"{s['mean_source_bytes']:9.0f}"
            )
        for key, gap in entry.items():
            if key.startswith("s3k_minus_conv"):
                log(
                    f"{resolution:>4} S3K - Conv ({key.rsplit('_', 1)[-1]}): occupancy PSNR "
                    f"{gap['mean_occupancy_psnr_db']:+.2f} dB, IoU {gap['mean_iou']:+.4f}, "
                    f"S3K ahead on {gap['s3k_wins_occupancy_psnr']}/{gap['files']} files"
                )
    if "acceptance_32" in summary:
        log(f"acceptance at 32^3: {json.dumps(summary['acceptance_32'])}")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ---- pictures -----------------------------------------------------------------------------


def _draw(ax, shape: Any, colour: str, rng: np.random.Generator) -> bool:
    """A trimesh (shaded faces, a random subset beyond MAX_FACES) or ``N x 3`` points on a
    3-D axes; False if there is nothing to draw."""
    if hasattr(shape, "faces") and len(getattr(shape, "faces", ())) > 0:
        faces = np.asarray(shape.faces)
        if len(faces) > MAX_FACES:
            keep = rng.choice(len(faces), MAX_FACES, replace=False)
        else:
            keep = slice(None)
        triangles = np.asarray(shape.vertices)[faces[keep]]  # (F, 3 corners, xyz)
        normals = np.asarray(shape.face_normals)[keep]  # (F, 3)
        light = np.array([0.4, 0.5, 0.75]) / np.linalg.norm([0.4, 0.5, 0.75])
        shade = 0.35 + 0.65 * np.abs(normals @ light)  # shells may face either way
        rgb = np.asarray(_rgb(colour))[None, :] * shade[:, None]
        ax.add_collection3d(
            Poly3DCollection(triangles, facecolors=np.clip(rgb, 0, 1), edgecolor="none")
        )
        return True
    points = np.asarray(shape.vertices if hasattr(shape, "vertices") else shape)
    if len(points) == 0:
        return False
    if len(points) > MAX_POINTS:
        points = points[rng.choice(len(points), MAX_POINTS, replace=False)]
    size = float(np.clip(2500 / len(points), 1.5, 6.0))  # sparse clouds: bigger dots
    ax.scatter(*points.T, s=size, c=colour, depthshade=True, linewidths=0)
    return True


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


def plot_gallery(rows: list[dict], resolution: int, out: Path) -> Path:
    """One row per file at ``resolution``: the original, then each encoder's decode."""
    rows = [r for r in rows if r["resolution"] == resolution]
    files = list(dict.fromkeys(r["file"] for r in rows))
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    columns = 1 + len(presets)
    fig = Figure(figsize=(2.7 * columns, 2.5 * len(files)))
    FigureCanvasAgg(fig)
    rng = np.random.default_rng(0)
    colours = {"original": "#4c72b0", "LPNet-S3K": "#dd8452", "LPNet-Conv": "#55a868"}
    for index, name in enumerate(files):
        mine = {r["preset"]: r for r in rows if r["file"] == name}
        first = mine[presets[0]]
        original = first["_shapes"]["original"]
        shapes = [original.trimesh() if original.is_mesh else original.points]
        captions = [
            f"source {first['source_bytes'] / 1000:.0f} kB\n"
            f"zstd grid {first['grid_zstd_bytes']:,} B"
        ]
        labels = ["original"]
        for preset in presets:
            row = mine.get(preset)
            shapes.append(None if row is None else row["_shapes"]["decoded"])
            captions.append("" if row is None else f"IoU {row['iou']:.3f}\n{row['file_bytes']:,} B")
            labels.append(ENCODERS.get(preset, preset))
        low, high = (np.asarray(b) for b in first["_bounds"])
        centre, half = (low + high) / 2, (high - low).max() / 2 * 1.02
        for column, (shape, caption, label) in enumerate(
            zip(shapes, captions, labels, strict=True)
        ):
            ax = fig.add_subplot(len(files), columns, index * columns + column + 1, projection="3d")
            drawn = shape is not None and _draw(ax, shape, colours.get(label, "#8172b3"), rng)
            if not drawn:
                ax.text2D(0.5, 0.5, "empty decode", transform=ax.transAxes, ha="center")
            ax.set(xlim=(centre[0] - half, centre[0] + half))
            ax.set(ylim=(centre[1] - half, centre[1] + half))
            ax.set(zlim=(centre[2] - half, centre[2] + half))
            ax.set_box_aspect((1, 1, 1))
            up = UP_AXIS.get(Path(name).suffix.lower(), "y")
            ax.view_init(elev=20, azim=-60 if up == "z" else 30, vertical_axis=up)
            ax.set_axis_off()
            ax.text2D(0.02, 0.02, caption, transform=ax.transAxes, fontsize=7, va="bottom")
            if index == 0:
                ax.set_title(label if column else "original (input)", fontsize=9)
            if column == 0:
                ax.text2D(
                    0.02,
                    0.92,
                    f"{name} ({first['modality']})",
                    transform=ax.transAxes,
                    fontsize=8,
                    weight="bold",
                )
    fig.suptitle(f"{resolution}^3: input shapes and decodes of the saved files", fontsize=10)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.35 / len(files), wspace=0, hspace=0)
    fig.savefig(out, dpi=110)
    return out


def plot_iou_bytes(rows: list[dict], out: Path) -> Path:
    """IoU against .nrep bytes (log x) per encoder and resolution; the lossless grid's
    zstd bytes and the source files' bytes are drawn at IoU 1."""
    fig = Figure(figsize=(8.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    resolutions = sorted({r["resolution"] for r in rows})
    colour = {res: f"C{i}" for i, res in enumerate(resolutions)}
    markers = {"LPNet-S3K": "o", "LPNet-Conv": "s"}
    for res in resolutions:
        for preset in dict.fromkeys(r["preset"] for r in rows):
            mine = [r for r in rows if r["resolution"] == res and r["preset"] == preset]
            if not mine:
                continue
            encoder = mine[0]["encoder"]
            ax.scatter(
                [r["file_bytes"] for r in mine],
                [r["iou"] for r in mine],
                marker=markers.get(encoder, "D"),
                facecolors=colour[res] if encoder == "LPNet-S3K" else "none",
                edgecolors=colour[res],
                s=36,
                zorder=4,
                label=f"{encoder} ({preset}), {res}^3 .nrep",
            )
            ax.scatter(
                [statistics.fmean(r["file_bytes"] for r in mine)],
                [statistics.fmean(r["iou"] for r in mine)],
                marker=markers.get(encoder, "D"),
                color=colour[res],
                edgecolors="black",
                linewidths=1.2,
                s=110,
                zorder=5,
                label=f"{encoder}, {res}^3: mean over files",
            )
        grids = {r["file"]: r["grid_zstd_bytes"] for r in rows if r["resolution"] == res}
        ax.scatter(
            list(grids.values()),
            [1.0] * len(grids),
            marker="|",
            s=200,
            color=colour[res],
            zorder=3,
            label=f"{res}^3 grid, bit-packed + zstd-19 (lossless)",
        )
    sources = {r["file"]: r["source_bytes"] for r in rows}
    ax.scatter(
        list(sources.values()),
        [1.0] * len(sources),
        marker="v",
        color="#777777",
        s=30,
        zorder=3,
        label="source file (its own voxelisation: IoU 1)",
    )
    ax.axhline(
        TARGETS["mean_iou"],
        linestyle="--",
        color="#999999",
        linewidth=1.0,
        label=f"target mean IoU {TARGETS['mean_iou']} (32^3)",
    )
    ax.set(xscale="log", xlabel="bytes (real files)", ylabel="IoU against the voxelised input")
    ax.set_title("Shapes: IoU against bytes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


# ---- main ---------------------------------------------------------------------------------


def environment() -> dict:
    return machine_facts(numcodecs=numcodecs.__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--files", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--resolutions", default=None, help="comma-separated (32,64)")
    parser.add_argument("--presets", default="balanced,balanced-conv", help="fitted in order")
    parser.add_argument("--steps", type=int, default=None, help="override the presets' steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed 1-step fits before the timed ones",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (results/shapes.json)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {', '.join(QUICK_FILES)} at 16^3, 5 steps, written to a temp dir",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.files = args.files or ",".join(QUICK_FILES)
        args.resolutions = args.resolutions or "16"
        args.steps = 5 if args.steps is None else args.steps
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="shapes_quick_")) / "shapes_quick.json"
    out_json = args.out or RESULTS / "shapes.json"
    if not args.data.is_dir():
        log(f"needs the shapes in {args.data}")
        return 2
    files = sorted(p for p in args.data.iterdir() if p.is_file())
    if args.files:
        wanted = {name.strip() for name in args.files.split(",")}
        missing = wanted - {p.name for p in files}
        if missing:
            log(f"no {', '.join(sorted(missing))} in {args.data}")
            return 2
        files = [p for p in files if p.name in wanted]
    resolutions = [int(r) for r in (args.resolutions or "32,64").split(",")]
    presets = [p.strip() for p in args.presets.split(",")]
    out_json.parent.mkdir(parents=True, exist_ok=True)
    gallery_png = out_json.with_name(f"{out_json.stem}_gallery.png")
    chart_png = out_json.with_name(f"{out_json.stem}_iou_bytes.png")
    report: dict[str, Any] = {
        "benchmark": "shapes",
        "environment": environment(),
        "data": str(args.data),
        "resolutions": resolutions,
        "presets": {p: ENCODERS.get(p, p) for p in presets},
        "steps_override": args.steps,
        "seed": args.seed,
        "timing": "fit_seconds: wall clock around neurep.fit (read + voxelise + train + "
        "measure); fit_wall_time_s: the training time the file stores",
        "lossless": "the fitted occupancy grid, numpy.packbits (C order), then numcodecs "
        "Zstd(level=19)",
        "runs": [],
        "summary": {},
    }
    rows: list[dict] = []
    total, done = len(files) * len(resolutions) * len(presets), 0
    log(f"shapes: {len(files)} files x {resolutions} x {presets} = {total} fits -> {out_json}")
    if not args.no_warmup:
        report["warmup_seconds"] = warm_up(files, presets, min(resolutions), args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        for path in files:
            for resolution in resolutions:
                for preset in presets:
                    row = fit_one(path, resolution, preset, args, Path(workdir))
                    done += 1
                    rows.append(row)
                    report["runs"].append(_public(row))
                    report["summary"] = summarise(rows)
                    out_json.write_text(json.dumps(report, indent=2))
                    log(
                        f"[{done}/{total}] {path.name} {resolution}^3 {row['encoder']}: "
                        f"IoU {row['iou']:.3f}, occ-PSNR {row['occupancy_psnr']:.2f} dB, "
                        f"F {_fmt(row['f_score'], '.3f')}, {row['file_bytes']:,} B "
                        f"(zstd grid {row['grid_zstd_bytes']:,} B, source "
                        f"{row['source_bytes']:,} B), fit {row['fit_seconds']:.1f} s"
                    )
    report["environment"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    out_json.write_text(json.dumps(report, indent=2))
    print_table(report["summary"])
    drawing = time.perf_counter()
    gallery_resolution = 32 if 32 in resolutions else resolutions[0]
    plot_gallery(rows, gallery_resolution, gallery_png)
    plot_iou_bytes(rows, chart_png)
    log(
        f"wrote {out_json}, {gallery_png.name}, {chart_png.name} "
        f"({time.perf_counter() - drawing:.1f} s to draw)"
    )
    print(json.dumps(report["summary"], indent=2))
    return 0


def _public(row: dict) -> dict:
    """The row as stored: without the in-memory shapes."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


if __name__ == "__main__":
    sys.exit(main())
