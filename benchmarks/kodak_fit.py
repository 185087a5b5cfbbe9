"""Kodak fit benchmark: LPNet-S3K (paper and default presets) and LPNet-Conv, side by side.

For each image (kodim01-08 by default) every configuration is fitted in turn (interleaved, so
all see the same machine load), saved, loaded and decoded. Per image and on average: PSNR and
MS-SSIM of the decoded uint8 image, decoder parameters, real `.nrep` bytes and bpp, fit wall
time, and decode wall time (load + decode of the file, median of 3).

    python benchmarks/kodak_fit.py                        # all 8 images, 4 configurations
    python benchmarks/kodak_fit.py --images 2 --steps 20  # a smoke run
    python benchmarks/kodak_fit.py --seed 1 --out benchmarks/results/kodak_fit_seed1.json

Writes benchmarks/results/kodak_fit.json (updated after every fit, so an interrupted run keeps
what it measured) and kodak_fit.png (PSNR vs bpp beside ../shared/anchors).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neurep

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from plotting import plot_points  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "kodak"
ANCHORS = REPO.parent / "shared" / "anchors" / "kodak_rd_reference.json"
RESULTS = REPO / "benchmarks" / "results"
CONFIGURATIONS = {
    "LPNet-S3K (paper preset)": "paper",
    "LPNet-S3K (default preset)": "balanced",
    "LPNet-Conv (default settings)": "balanced-conv",
    "LPNet-Conv (paper preset)": "paper-conv",
}
#: S3K against Conv, each pair fitted in the same run with the same recipe.
COMPARISONS = {
    "default": ("LPNet-S3K (default preset)", "LPNet-Conv (default settings)"),
    "paper": ("LPNet-S3K (paper preset)", "LPNet-Conv (paper preset)"),
}


def measure(image_path: Path, preset: str, steps: int | None, workdir: Path, seed: int = 0) -> dict:
    """Fit one image with one preset; everything measured on real files."""
    original = np.asarray(Image.open(image_path).convert("RGB"))
    started = time.perf_counter()
    datum = neurep.fit(original, preset=preset, steps=steps, seed=seed, progress=False)
    fit_seconds = time.perf_counter() - started
    path = workdir / f"{image_path.stem}.{preset}.nrep"
    nbytes = datum.save(path)
    decode_times = []
    for _ in range(3):
        started = time.perf_counter()
        decoded = neurep.load(path).decode()
        decode_times.append(time.perf_counter() - started)
    quality = datum.adapter.quality(original, decoded)
    pixels = original.shape[0] * original.shape[1]
    # The same fitted decoder stored at int8 (no refit): what quantisation alone costs.
    int8_path = workdir / f"{image_path.stem}.{preset}.int8.nrep"
    int8_bytes = datum.with_precision("int8").save(int8_path)
    int8_quality = datum.adapter.quality(original, neurep.load(int8_path).decode())
    return {
        "image": image_path.name,
        "preset": preset,
        "psnr": quality["psnr"],
        "ms_ssim": quality["ms_ssim"],
        "decoder_parameters": datum.metadata["fit"]["decoder_parameters"],
        "nrep_bytes": nbytes,
        "bpp": nbytes * 8 / pixels,
        "fit_seconds": fit_seconds,
        "steps": datum.metadata["fit"]["steps"],
        "decode_seconds": statistics.median(decode_times),
        "exact_round_trip": bool(np.array_equal(decoded, datum.decode())),
        "int8_psnr": int8_quality["psnr"],
        "int8_nrep_bytes": int8_bytes,
        "int8_bpp": int8_bytes * 8 / pixels,
        "int8_loss_db": quality["psnr"] - int8_quality["psnr"],
    }


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for name in CONFIGURATIONS:
        mine = [r for r in rows if r["configuration"] == name]
        if not mine:
            continue
        summary[name] = {
            "images": len(mine),
            "mean_psnr": statistics.fmean(r["psnr"] for r in mine),
            "mean_ms_ssim": statistics.fmean(r["ms_ssim"] for r in mine),
            "decoder_parameters": mine[0]["decoder_parameters"],
            "mean_bpp": statistics.fmean(r["bpp"] for r in mine),
            "median_fit_seconds": statistics.median(r["fit_seconds"] for r in mine),
            "median_decode_seconds": statistics.median(r["decode_seconds"] for r in mine),
            "mean_int8_psnr": statistics.fmean(r["int8_psnr"] for r in mine),
            "mean_int8_bpp": statistics.fmean(r["int8_bpp"] for r in mine),
            "max_int8_loss_db": max(r["int8_loss_db"] for r in mine),
            "mean_int8_loss_db": statistics.fmean(r["int8_loss_db"] for r in mine),
        }
    for label, (s3k, conv) in COMPARISONS.items():
        pairs = [
            (a["psnr"], b["psnr"])
            for a in rows
            if a["configuration"] == s3k
            for b in rows
            if b["configuration"] == conv and b["image"] == a["image"]
        ]
        if pairs:
            summary[f"s3k_minus_conv_{label}"] = {
                "images": len(pairs),
                "mean_db": statistics.fmean(a - b for a, b in pairs),
                "s3k_wins": sum(a > b for a, b in pairs),
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="override every preset's steps")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    parser.add_argument("--out", type=Path, default=RESULTS / "kodak_fit.json")
    parser.add_argument("--seed", type=int, default=0, help="fit seed (initialisation)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [c.strip() for c in args.configurations.split(",")]
    images = sorted(args.data.glob("kodim*.png"))[: args.images]
    if not images:
        print(f"no kodim*.png under {args.data}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "kodak_fit",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "neurep": neurep.__version__,
        },
        "steps_override": args.steps,
        "seed": args.seed,
        "rows": [],
        "summary": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for image in images:
            for name in wanted:
                row = {
                    "configuration": name,
                    **measure(image, CONFIGURATIONS[name], args.steps, Path(workdir), args.seed),
                }
                report["rows"].append(row)
                report["summary"] = summarise(report["rows"])
                args.out.write_text(json.dumps(report, indent=2))
                print(json.dumps(row), flush=True)
    print(json.dumps(report["summary"], indent=2))
    points = [
        {"name": r["configuration"], "bpp": r["bpp"], "psnr": r["psnr"]} for r in report["rows"]
    ]
    for name, summary in report["summary"].items():
        if name in CONFIGURATIONS:
            points.append(
                {"name": f"{name}, mean", "bpp": summary["mean_bpp"], "psnr": summary["mean_psnr"]}
            )
    plot_points(
        points,
        args.out.with_suffix(".png"),
        "Kodak 01-08: LPNet fits (float32 files)",
        anchors_path=ANCHORS if ANCHORS.exists() else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
