"""Batch conversion throughput: ``neurep.convert`` one at a time, batched, 2 workers, Dask.

The benchmark cuts its own data: seeded, non-overlapping crops of kodim01-08
(``../shared/data/kodak``), ``--crops`` of 64x64 (200) and ``--large`` of 256x256 (10),
written as PNGs into a temporary folder. Each size's folder is converted with the ``fast``
preset (seed 0) in four modes, one after another in the same run, each into a fresh
output folder, timed by wall clock around ``neurep.convert(..., progress=False)``:

* ``one at a time``: ``workers=1, batch=1``, one process with all cores' torch threads;
* ``batched``: ``workers=1, batch=--batch-size`` (16): items of one shape fitted K at a
  time in one process (``neurep.fitting.stacked``); recorded as not available when this
  ``neurep.convert`` takes no ``batch``;
* ``workers 2``: ``workers=2``, two spawned processes of cores // 2 threads each;
* ``dask-local 2``: ``dask_local=2``, a 2-worker ``distributed.LocalCluster``, cores // 2
  torch threads per worker.

Per mode: items/s (items / seconds, process and cluster start-up included), mean PSNR and
mean bytes over the ``index.jsonl`` rows with status ok, failures. Per size: the batched
speed-up over one at a time (and the PSNR difference), and the parallel efficiency,
items/s(2 workers) / (2 x items/s(one at a time)): the one-at-a-time run uses every core's
thread in one process and the 2-worker runs split the same threads between two, so both
sides use the same total threads. An untimed one-item, one-step conversion first keeps
first-use costs (imports, kernels) out of the timings.

Writes results/convert.json (``--out``; updated after every mode) and results/convert.png
(items/s per mode, 64x64 and 256x256 panels). Progress to stderr, the summary to stdout.

    ./dev bench convert                        # 200 + 10 crops: about 25 min on 2 cores
    ./dev bench convert --crops 100 --large 4  # shorter
    ./dev bench convert --quick                # 12 + 2 crops, 5 steps, into a temp dir
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import neurep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_facts

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO / ".." / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results"
IMAGES = tuple(f"kodim{i:02d}.png" for i in range(1, 9))
MODES = ("one at a time", "batched", "workers 2", "dask-local 2")
#: The acceptance the batched/parallel conversion is judged on (64x64 crops).
TARGETS = {"batched_speedup": 3.0, "psnr_tolerance_db": 0.2, "parallel_efficiency": 0.8}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- data -----------------------------------------------------------------------------------


def make_crops(folder: Path, count: int, size: int, seed: int) -> list[str]:
    """``count`` non-overlapping ``size`` x ``size`` crops of kodim01-08 as PNGs in
    ``folder``: every image cut into a grid of size-sided cells, ``count`` cells drawn
    without replacement (``numpy.random.default_rng(seed)``). Returns the file names."""
    pictures = {name: np.asarray(Image.open(KODAK / name).convert("RGB")) for name in IMAGES}
    cells = [
        (name, y, x)
        for name, pixels in pictures.items()
        for y in range(0, pixels.shape[0] - size + 1, size)
        for x in range(0, pixels.shape[1] - size + 1, size)
    ]
    if count > len(cells):
        raise SystemExit(f"only {len(cells)} non-overlapping {size}x{size} crops in kodim01-08")
    picked = sorted(np.random.default_rng(seed).choice(len(cells), size=count, replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number, cell in enumerate(picked):
        name, y, x = cells[cell]
        file = f"crop{size}_{number:04d}_{Path(name).stem}_y{y}_x{x}.png"
        Image.fromarray(pictures[name][y : y + size, x : x + size]).save(folder / file)
        names.append(file)
    return names


# ---- one conversion -------------------------------------------------------------------------


def batch_supported() -> bool:
    """Whether this ``neurep.convert`` takes ``batch`` (a named parameter)."""
    return "batch" in inspect.signature(neurep.convert).parameters


def mode_options(mode: str, batch_size: int, batched: bool) -> dict[str, Any] | None:
    """``neurep.convert``'s keyword arguments for ``mode``; None: not available."""
    if mode == "one at a time":
        return {"workers": 1, **({"batch": 1} if batched else {})}
    if mode == "batched":
        return {"workers": 1, "batch": batch_size} if batched else None
    if mode == "workers 2":
        return {"workers": 2}
    if mode == "dask-local 2":
        return {"dask_local": 2}
    raise ValueError(mode)


def index_rows(out: Path) -> list[dict]:
    rows = []
    index = out / "index.jsonl"
    if index.is_file():
        for line in index.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def run_mode(
    mode: str, size: int, source: Path, out: Path, options: dict | None, args
) -> dict[str, Any]:
    """Convert ``source`` into the fresh folder ``out`` in ``mode``; the mode's row."""
    row: dict[str, Any] = {"mode": mode, "size": size, "options": options}
    if options is None:
        row.update(
            available=False,
            note="not available: this neurep.convert takes no batch= (neurep.fitting.stacked)",
        )
        return row
    fit = {"preset": "fast", "seed": 0, **({"steps": args.steps} if args.steps else {})}
    torch.set_num_threads(args.threads)  # the parent's threads (one at a time, batched)
    started = time.perf_counter()
    try:
        report = neurep.convert(source, out, progress=False, **options, **fit)
    except Exception as error:  # a mode that fails is recorded, the others still run
        row.update(available=False, note=f"{type(error).__name__}: {error}")
        return row
    seconds = time.perf_counter() - started
    ok = [r for r in index_rows(out) if r.get("status") == "ok"]
    psnrs = [
        r["quality"]["psnr"]
        for r in ok
        if isinstance((r.get("quality") or {}).get("psnr"), int | float)
        and math.isfinite(r["quality"]["psnr"])
    ]
    fit_seconds = [r["fit_s"] for r in ok if isinstance(r.get("fit_s"), int | float)]
    row.update(
        available=True,
        runner=report.runner,
        items=len(ok),
        seconds=seconds,
        items_per_s=len(ok) / seconds if seconds > 0 else None,
        mean_psnr=statistics.fmean(psnrs) if psnrs else None,
        mean_bytes=statistics.fmean(r["bytes"] for r in ok) if ok else None,
        failed=report.failed,
        mean_fit_s=statistics.fmean(fit_seconds) if fit_seconds else None,
        errors=[r.get("error") for r in report.errors[:3]],
    )
    return row


def warm_up(source: Path, workdir: Path) -> float:
    """An untimed one-step conversion of one crop in this process."""
    started = time.perf_counter()
    first = sorted(source.iterdir())[0]
    single = workdir / "warmup_src"
    single.mkdir()
    (single / first.name).write_bytes(first.read_bytes())
    neurep.convert(single, workdir / "warmup_out", progress=False, preset="fast", steps=1)
    return time.perf_counter() - started


# ---- summary and plot -----------------------------------------------------------------------


def summarise(rows: list[dict]) -> dict[str, Any]:
    def rate(size: int, mode: str) -> dict | None:
        found = [r for r in rows if r["size"] == size and r["mode"] == mode and r["available"]]
        return found[0] if found and found[0].get("items_per_s") else None

    result: dict[str, Any] = {}
    for size in (64, 256):
        one, batched = rate(size, "one at a time"), rate(size, "batched")
        workers, dask = rate(size, "workers 2"), rate(size, "dask-local 2")
        speedup = batched["items_per_s"] / one["items_per_s"] if one and batched else None
        psnr_diff = (
            batched["mean_psnr"] - one["mean_psnr"]
            if one and batched and None not in (one["mean_psnr"], batched["mean_psnr"])
            else None
        )
        result[f"batched_speedup_{size}"] = speedup
        result[f"psnr_difference_{size}"] = psnr_diff
        for name, row in (("workers2", workers), ("dask2", dask)):
            result[f"parallel_efficiency_{name}_{size}"] = (
                row["items_per_s"] / (2 * one["items_per_s"]) if one and row else None
            )
    speedup, diff = result["batched_speedup_64"], result["psnr_difference_64"]
    efficiency = result["parallel_efficiency_workers2_64"]
    result["target_batched_3x_same_psnr_64"] = (
        None
        if speedup is None or diff is None
        else bool(
            speedup >= TARGETS["batched_speedup"] and abs(diff) <= TARGETS["psnr_tolerance_db"]
        )
    )
    result["target_parallel_efficiency_0_8_64"] = (
        None if efficiency is None else bool(efficiency >= TARGETS["parallel_efficiency"])
    )
    return result


def plot(rows: list[dict], summary: dict, out: Path) -> Path:
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for panel, size in enumerate((64, 256)):
        ax = fig.add_subplot(1, 2, panel + 1)
        at = {r["mode"]: r for r in rows if r["size"] == size}
        values = [(at.get(m) or {}).get("items_per_s") or 0.0 for m in MODES]
        bars = ax.bar(range(len(MODES)), values, color=colours)
        top = max(values) or 1.0
        for bar, mode, value in zip(bars, MODES, values, strict=True):
            row = at.get(mode) or {}
            if not row.get("available"):
                text = "not\navailable"
            else:
                psnr = row.get("mean_psnr")
                text = f"{value:.2f}/s\n{psnr:.2f} dB" if psnr is not None else f"{value:.2f}/s"
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.02 * top, text,
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
        ax.set_xticks(range(len(MODES)), MODES, fontsize=8)
        ax.set_ylim(0, top * 1.3)
        ax.set_ylabel("items/s (wall clock)")
        items = max((r.get("items") or 0 for r in at.values()), default=0)
        notes = []
        if summary.get(f"batched_speedup_{size}") is not None:
            notes.append(f"batched x{summary[f'batched_speedup_{size}']:.2f}")
        for name, label in (("workers2", "2 workers"), ("dask2", "dask 2")):
            value = summary.get(f"parallel_efficiency_{name}_{size}")
            if value is not None:
                notes.append(f"{label} eff. {value:.2f}")
        ax.set_title(f"{items} crops of {size}x{size}\n" + ", ".join(notes), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(
        "neurep.convert, fast preset: items/s per mode (same total threads; "
        f"targets: batched >= {TARGETS['batched_speedup']:g}x, efficiency >= "
        f"{TARGETS['parallel_efficiency']:g})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


# ---- main -----------------------------------------------------------------------------------


def environment() -> dict:
    try:
        import distributed

        dask_version = distributed.__version__
    except ImportError:
        dask_version = None
    return machine_facts(distributed=dask_version, convert_takes_batch=batch_supported())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", type=int, default=200, help="64x64 crops (200)")
    parser.add_argument("--large", type=int, default=10, help="256x256 crops (10)")
    parser.add_argument("--batch-size", type=int, default=16, help="batched mode's K (16)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--seed", type=int, default=0, help="crop selection seed")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="parent torch threads (all cores)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (results/convert.json)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 12 + 2 crops, 5 steps, into a temp dir"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.crops, args.large = 12, 2
        args.steps = 5 if args.steps is None else args.steps
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="convert_quick_")) / "convert_quick.json"
    out_json = args.out or RESULTS / "convert.json"
    missing = [name for name in IMAGES if not (KODAK / name).is_file()]
    if missing:
        log(f"needs {', '.join(missing)} in {KODAK.resolve()}")
        return 2
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_png = out_json.with_suffix(".png")
    batched = batch_supported()
    report: dict[str, Any] = {
        "benchmark": "convert",
        "environment": environment(),
        "data": {
            "source": str(KODAK.resolve()),
            "images": list(IMAGES),
            "crops_64": args.crops,
            "crops_256": args.large,
            "seed": args.seed,
            "how": "non-overlapping grid cells, drawn without replacement, PNG",
        },
        "fit": {"preset": "fast", "seed": 0, "steps_override": args.steps},
        "batch_size": args.batch_size,
        "timing": "seconds: wall clock around neurep.convert(progress=False) into a fresh "
        "folder, process / cluster start-up included; items_per_s = ok items / seconds; "
        "mean_psnr, mean_bytes over index.jsonl rows with status ok",
        "threads": f"one at a time and batched: 1 process x {args.threads} torch threads; "
        "workers 2 and dask-local 2: 2 processes x cores // 2 threads, so the parallel "
        "efficiency, items/s(2 workers) / (2 x items/s(one at a time)), compares runs "
        "using the same total threads",
        "targets": TARGETS,
        "modes": {"64": [], "256": []},
        "summary": {},
    }
    rows: list[dict] = []
    sizes = [(64, args.crops), (256, args.large)]
    sizes = [(size, count) for size, count in sizes if count > 0]
    if not batched:
        log("batched: this neurep.convert takes no batch= yet; recorded as not available")
    log(f"convert: {sizes} crops x {len(MODES)} modes -> {out_json}")
    with tempfile.TemporaryDirectory(prefix="neurep_convert_bench_") as directory:
        workdir = Path(directory)
        sources = {}
        for size, count in sizes:
            sources[size] = workdir / f"crops{size}"
            make_crops(sources[size], count, size, args.seed)
        report["warmup_seconds"] = warm_up(sources[sizes[0][0]], workdir)
        for size, _count in sizes:
            for mode in MODES:
                options = mode_options(mode, args.batch_size, batched)
                out = workdir / f"out{size}_{mode.replace(' ', '_')}"
                row = run_mode(mode, size, sources[size], out, options, args)
                rows.append(row)
                report["modes"][str(size)].append(row)
                report["summary"] = summarise(rows)
                out_json.write_text(json.dumps(report, indent=2))
                if not row["available"]:
                    log(f"[{size}] {mode}: {row['note']}")
                    continue
                log(
                    f"[{size}] {mode}: {row['items']} items in {row['seconds']:.1f} s = "
                    f"{row['items_per_s']:.3f} items/s, PSNR {_fmt(row['mean_psnr'], '.2f')} "
                    f"dB, {_fmt(row['mean_bytes'], ',.0f')} B, {row['failed']} failed "
                    f"({row['runner']})"
                )
                if len(rows) == 1 and row["items_per_s"]:
                    _estimate(row, sizes, batched)
    report["environment"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    out_json.write_text(json.dumps(report, indent=2))
    plot(rows, report["summary"], out_png)
    log(f"wrote {out_json} and {out_png}")
    print(json.dumps(report["summary"], indent=2))
    return 0


def _estimate(first: dict, sizes: list[tuple[int, int]], batched: bool) -> None:
    """The whole run's time from the first mode's rate: each mode at that rate, an item's
    time in proportion to its pixels (a 256x256 crop as 16 of 64x64)."""
    per_item = first["seconds"] / max(1, first["items"])
    modes = len(MODES) if batched else len(MODES) - 1
    base = first["size"]
    total = sum(count * per_item * (size / base) ** 2 * modes for size, count in sizes)
    log(
        f"estimate: about {total / 60:.1f} min in all "
        f"({total - first['seconds']:.0f} s still to go), from the first mode's rate"
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
