"""Neural data through a PyTorch ``DataLoader``, against PNG files read with Pillow.

The benchmark cuts its own data as ``benchmarks/convert.py`` does (seeded,
non-overlapping crops of kodim01-08 from ``../shared/data/kodak``): ``--crops`` 64x64
crops (256) and ``--large`` 256x256 crops (48, all there are), written as PNGs, then converted with
``neurep.convert`` (``fast`` preset, ``--steps`` 60, batched). Loading speed does not
depend on how long a datum was fitted: the decoder's size comes from the capacity rule.
Each size is also packed (``neurep.data.packs``).

Loaders, all ``DataLoader(batch_size=32, shuffle=True, persistent_workers=workers > 0)``
over the same items, each run with ``num_workers`` 0 and 2, one after another:

* ``png``: Pillow opens the PNG, ``torch.from_numpy(...).permute(2, 0, 1) / 255``;
* ``neural item by item``: ``NeuralDataset(folder)``, each item decoded alone;
* ``neural batched``: ``NeuralDataset(folder, output="encoded")`` with
  ``collate_fn=dataset.decode``: one vmapped forward per batch, in the workers;
* ``neural batched (pack)``: the same from the ``.h5`` pack;
* ``embedding``: ``NeuralDataset(folder, output="embedding")``.

Per loader: items/s over ``--epochs`` (5) epochs after the first, the loaders' epochs
interleaved; first-batch latency (from creating the iterator to the first batch of the
first epoch, worker start-up included); peak resident memory of the main process and of
each worker (VmHWM, shared pages included). The whole comparison runs ``--repeat`` (3)
times, since this machine's speed drifts by up to a quarter between runs; the summary gives
each ratio's median and range, the plot the median items/s. With 0
workers the main process runs on torch's default threads; each worker on one (PyTorch's
default). Writes results/loaders.json and results/loaders.png; progress to stderr.

    ./dev bench loaders                         # about 8 min on 2 cores
    ./dev bench loaders --quick                 # 64 + 32 crops, 1 epoch, into a temp dir
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import make_crops

import neurep
from neurep.data import NeuralDataset, pack

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOADERS = ("png", "neural item by item", "neural batched", "neural batched (pack)", "embedding")
#: The issue's acceptance: batched over item-by-item decoding (64x64), embeddings over
#: decoding (item by item, and the batched loader), and the goal of decoding level with PNG.
TARGETS = {
    "batched_over_item": 4.0,
    "embedding_over_item": 10.0,
    "embedding_over_decoding": 10.0,
    "decoded_over_png": 1.0,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PngDataset(Dataset):
    """The baseline: PNG files decoded by Pillow to ``C x H x W`` float32 in [0, 1]."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            pixels = np.asarray(image.convert("RGB"))
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)


def _peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class TimedLoader:
    """One loader of the comparison: its first epoch (latency) and its timed epochs."""

    def __init__(self, name: str, dataset: Dataset, collate, workers: int, batch: int) -> None:
        self.name, self.dataset, self.workers = name, dataset, workers
        self.loader = DataLoader(
            dataset,
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
        )
        self.seconds = 0.0
        self.epochs = 0

    def first_epoch(self) -> None:
        """Time from creating the iterator to the first batch; then the rest of the epoch."""
        started = time.perf_counter()
        iterator = iter(self.loader)
        seen = len(next(iterator))
        self.first_batch_s = time.perf_counter() - started
        seen += sum(len(batch) for batch in iterator)
        assert seen == len(self.dataset), (seen, len(self.dataset))
        self.worker_pids = [w.pid for w in getattr(iterator, "_workers", [])]

    def timed_epoch(self) -> None:
        started = time.perf_counter()
        seen = sum(len(batch) for batch in self.loader)
        self.seconds += time.perf_counter() - started
        self.epochs += 1
        assert seen == len(self.dataset)

    def result(self) -> dict:
        workers_kb = [_peak_rss_kb(pid) for pid in self.worker_pids]
        return {
            "items_per_s": self.epochs * len(self.dataset) / self.seconds,
            "first_batch_s": self.first_batch_s,
            "peak_rss_worker_mb": [kb / 1024 for kb in workers_kb if kb] or None,
        }


def prepare(work: Path, count: int, size: int, steps: int) -> tuple[list[Path], Path, Path]:
    """PNG crops, their converted folder and its pack (reused when already there)."""
    pngs, out, packed = work / f"png{size}", work / f"nrep{size}", work / f"pack{size}.h5"
    names = sorted(p.name for p in pngs.glob("*.png")) if pngs.is_dir() else []
    if len(names) != count:
        names = make_crops(pngs, count, size, seed=size)
    if not (out / "index.jsonl").is_file() or len(NeuralDataset(out)) != count:
        log(f"converting {count} {size}x{size} crops ({steps} steps)")
        neurep.convert(pngs, out, preset="fast", steps=steps, batch=16, progress=False)
    if not packed.is_file():
        pack(out, packed, progress=False)
    return [pngs / name for name in names], out, packed


def measure_size(work: Path, count: int, size: int, args) -> list[dict]:
    """Every loader at 0 and at 2 workers; the timed epochs of one worker count are
    interleaved (loader after loader, epoch after epoch), so that the machine's drift
    falls on all of them alike."""
    pngs, out, packed = prepare(work, count, size, args.steps)
    rows = []
    for workers in (0, 2):
        loaders = []
        for name in LOADERS:
            if name == "png":
                dataset, collate = PngDataset(pngs), None
            elif name == "neural item by item":
                dataset, collate = NeuralDataset(out), None
            elif name == "embedding":
                dataset, collate = NeuralDataset(out, output="embedding"), None
            else:
                source = packed if "pack" in name else out
                dataset = NeuralDataset(source, output="encoded")
                collate = dataset.decode
            loaders.append(TimedLoader(name, dataset, collate, workers, args.batch))
        for loader in loaders:
            loader.first_epoch()
        for _ in range(args.epochs):
            for loader in loaders:
                loader.timed_epoch()
        for loader in loaders:
            row = {"size": size, "items": count, "loader": loader.name, "workers": workers}
            row.update(loader.result())
            row["peak_rss_main_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            log(
                f"{size}x{size} {loader.name:<22} workers={workers}: "
                f"{row['items_per_s']:8.1f} items/s, first batch {row['first_batch_s']:.2f} s"
            )
            rows.append(row)
        del loaders
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per size and worker count: each ratio's median over the runs, and its range."""

    def speed(run: int, size: int, loader: str, workers: int) -> float:
        (row,) = [
            r
            for r in rows
            if (r["run"], r["size"], r["loader"], r["workers"]) == (run, size, loader, workers)
        ]
        return row["items_per_s"]

    def ratios(run: int, size: int, workers: int) -> dict[str, float]:
        decoded = speed(run, size, "neural batched", workers)
        item = speed(run, size, "neural item by item", workers)
        embedding = speed(run, size, "embedding", workers)
        return {
            "batched_over_item": decoded / item,
            "decoded_over_png": decoded / speed(run, size, "png", workers),
            "embedding_over_decoding": embedding / decoded,
            "embedding_over_item": embedding / item,
            "pack_over_folder": speed(run, size, "neural batched (pack)", workers) / decoded,
        }

    runs = sorted({r["run"] for r in rows})
    summary: dict[str, Any] = {}
    for size in sorted({r["size"] for r in rows}):
        for workers in (0, 2):
            per_run = [ratios(run, size, workers) for run in runs]
            summary[f"{size}_workers{workers}"] = {
                name: {
                    "median": statistics.median(r[name] for r in per_run),
                    "min": min(r[name] for r in per_run),
                    "max": max(r[name] for r in per_run),
                }
                for name in per_run[0]
            }
    return summary


def median_rows(rows: list[dict]) -> list[dict]:
    """One row per (size, loader, workers): the median items/s over the runs."""
    keys = sorted({(r["size"], r["workers"], r["loader"]) for r in rows})
    out = []
    for size, workers, loader in keys:
        same = [
            r for r in rows if (r["size"], r["workers"], r["loader"]) == (size, workers, loader)
        ]
        speeds = [r["items_per_s"] for r in same]
        out.append(
            {**same[0], "items_per_s": statistics.median(speeds), "runs_items_per_s": speeds}
        )
    return out


def plot(rows: list[dict], out: Path) -> Path:
    sizes = sorted({r["size"] for r in rows})
    figure = Figure(figsize=(5.5 * len(sizes), 4.2))
    FigureCanvasAgg(figure)
    for panel, size in enumerate(sizes):
        ax = figure.add_subplot(1, len(sizes), panel + 1)
        for offset, workers in ((-0.2, 0), (0.2, 2)):
            speeds = [
                next(
                    r["items_per_s"]
                    for r in rows
                    if (r["size"], r["loader"], r["workers"]) == (size, loader, workers)
                )
                for loader in LOADERS
            ]
            ax.bar(np.arange(len(LOADERS)) + offset, speeds, 0.4, label=f"num_workers={workers}")
        ax.set_xticks(np.arange(len(LOADERS)), [n.replace(" ", "\n", 1) for n in LOADERS])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("items/s (batch 32)")
        ax.set_title(f"{size}x{size} crops")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=256, help="64x64 crops")
    parser.add_argument("--large", type=int, default=48, help="256x256 crops (at most 48)")
    parser.add_argument("--steps", type=int, default=60, help="fit steps of the conversion")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per loader")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="runs (medians are reported)")
    parser.add_argument("--work", type=Path, default=None, help="data folder (kept)")
    parser.add_argument("--out", type=Path, default=RESULTS / "loaders.json")
    parser.add_argument("--quick", action="store_true", help="64 + 32 crops, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.crops, args.large, args.epochs, args.steps, args.repeat = 64, 32, 1, 5, 1
    with tempfile.TemporaryDirectory(prefix="neurep-loaders-") as temporary:
        work = args.work or Path(temporary)
        rows = []
        for run in range(args.repeat):
            log(f"run {run + 1} of {args.repeat}")
            for count, size in ((args.crops, 64), (args.large, 256)):
                rows += [{"run": run, **row} for row in measure_size(work, count, size, args)]
    summary = summarise(rows)
    result = {
        "benchmark": "loaders",
        "environment": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "neurep": neurep.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "targets": TARGETS,
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(median_rows(rows), args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
