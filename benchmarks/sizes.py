"""File sizes of default fits, from 32x32 crops to whole Kodak images, and 1-D / 3-D arrays.

For each datum: the default fit's file bytes, bits per pixel, PSNR and fit time, beside the
PNG and the JPEG (quality 90) of the same crop, measured in the same run. Prints one JSON row
per datum, writes results/sizes.json and results/sizes.png (bytes against raw bytes).

    ./dev bench sizes                          # crops 32..512 (3 each), kodim01-08, arrays
    ./dev bench sizes --crops 1 --kodak 0      # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import neurep
from neurep.metrics import psnr

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results"
CROP_SIDES = (32, 64, 128, 256, 512)


def image_codecs(pixels: np.ndarray) -> dict:
    """PNG and JPEG (quality 90) bytes of ``pixels`` (H, W, 3) uint8, and the JPEG's PSNR."""
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG", optimize=True)
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    return {
        "png_bytes": len(png.getvalue()),
        "jpeg90_bytes": len(jpeg.getvalue()),
        "jpeg90_psnr": psnr(pixels.astype(np.float64), decoded.astype(np.float64), 255.0),
    }


def fit_row(name: str, kind: str, datum_input, pixels: int, workdir: Path, seed: int) -> dict:
    """Fit ``datum_input`` with the defaults, save it, and measure what the issue asks for."""
    started = time.perf_counter()
    datum = neurep.fit(datum_input, seed=seed, progress=False)
    seconds = time.perf_counter() - started
    nbytes = datum.save(workdir / "datum.nrep")
    fit = datum.metadata["fit"]
    return {
        "name": name,
        "kind": kind,
        "raw_bytes": int(np.asarray(datum_input).nbytes),
        "pixels": pixels,
        "nrep_bytes": nbytes,
        "bpp": nbytes * 8 / pixels,
        "psnr": datum.metadata["quality"]["psnr"],
        "lossless": datum.metadata["quality"]["lossless"],
        "decoder_parameters": fit["decoder_parameters"],
        "width_scale": (fit.get("capacity") or {}).get("width_scale"),
        "embedding_numbers": int(np.prod(datum.metadata["embedding"]["shape"])),
        "fit_seconds": seconds,
    }


def crops(side: int, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` centre crops of ``side`` pixels from different Kodak images."""
    chosen = []
    for index in range(count):
        path = DATA / f"kodim{index * 3 + 1:02d}.png"
        image = np.asarray(Image.open(path).convert("RGB"))
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        chosen.append((f"{path.stem}[{side}]", image[top : top + side, left : left + side]))
    return chosen


def arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 2000)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 16)] * 3, indexing="ij"))
    big = np.stack(np.meshgrid(*[np.linspace(-1, 1, 64)] * 3, indexing="ij"))
    return {
        "1-D chirp, 2000 float64": np.sin(2 * np.pi * (5 * t + 40 * t**2)),
        "1-D random walk, 65536 float32": np.cumsum(rng.standard_normal(65536)).astype(np.float32),
        "3-D blob, 16^3 float32": np.exp(-4 * (grid**2).sum(0)).astype(np.float32),
        "3-D blobs, 64^3 float32": (
            np.exp(-6 * ((big - 0.3) ** 2).sum(0)) + np.exp(-9 * ((big + 0.4) ** 2).sum(0))
        ).astype(np.float32),
    }


def plot(rows: list[dict], out: Path) -> Path:
    """File bytes against raw bytes, log-log: neurep, PNG and JPEG 90 per datum."""
    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    images = [r for r in rows if r["kind"] == "image"]
    others = [r for r in rows if r["kind"] != "image"]
    ax.scatter([r["raw_bytes"] for r in images], [r["nrep_bytes"] for r in images], label=".nrep")
    ax.scatter([r["raw_bytes"] for r in images], [r["png_bytes"] for r in images], label="PNG")
    ax.scatter(
        [r["raw_bytes"] for r in images], [r["jpeg90_bytes"] for r in images], label="JPEG q90"
    )
    ax.scatter(
        [r["raw_bytes"] for r in others],
        [r["nrep_bytes"] for r in others],
        marker="x",
        label=".nrep (arrays)",
    )
    ax.set(xscale="log", yscale="log", xlabel="raw bytes", ylabel="file bytes")
    ax.set_title("Default fits: file size against the datum's size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(out, dpi=120)
    return out


def summary(rows: list[dict]) -> dict:
    """Per group: mean bpp / PSNR, the largest file, and whether .nrep beat PNG everywhere."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = row["name"].split("[")[-1].rstrip("]") if "[" in row["name"] else row["kind"]
        groups.setdefault(key if row["kind"] == "image" else row["name"], []).append(row)
    result = {}
    for key, members in groups.items():
        entry = {
            "count": len(members),
            "mean_bpp": statistics.fmean(r["bpp"] for r in members),
            "max_bpp": max(r["bpp"] for r in members),
            "max_nrep_bytes": max(r["nrep_bytes"] for r in members),
            "mean_psnr": statistics.fmean(r["psnr"] or 99.0 for r in members),
        }
        if "png_bytes" in members[0]:
            entry["nrep_smaller_than_png"] = all(r["nrep_bytes"] < r["png_bytes"] for r in members)
            entry["mean_png_bytes"] = statistics.fmean(r["png_bytes"] for r in members)
        result[key] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", type=int, default=3, help="crops per size (default 3)")
    parser.add_argument("--sides", default=",".join(map(str, CROP_SIDES)))
    parser.add_argument("--kodak", type=int, default=8, help="whole Kodak images (default 8)")
    parser.add_argument("--no-arrays", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="sizes")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs the Kodak images in {DATA}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "sizes",
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "neurep": neurep.__version__,
        },
        "defaults": "preset balanced, precision int8",
        "rows": [],
    }
    images = [c for side in map(int, args.sides.split(",")) for c in crops(side, args.crops)]
    images += [
        (f"kodim{i:02d}", np.asarray(Image.open(DATA / f"kodim{i:02d}.png").convert("RGB")))
        for i in range(1, args.kodak + 1)
    ]
    out_json = RESULTS / f"{args.name}.json"
    with tempfile.TemporaryDirectory() as workdir:
        for name, pixels in images:
            row = fit_row(
                name, "image", pixels, pixels.shape[0] * pixels.shape[1], Path(workdir), args.seed
            )
            row.update(image_codecs(pixels))
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_json.write_text(json.dumps(report, indent=2))
        for name, values in ({} if args.no_arrays else arrays(args.seed)).items():
            row = fit_row(name, "array", values, values.size, Path(workdir), args.seed)
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_json.write_text(json.dumps(report, indent=2))
    report["summary"] = summary(report["rows"])
    out_json.write_text(json.dumps(report, indent=2))
    plot(report["rows"], RESULTS / f"{args.name}.png")
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
