"""Neural collections: one shared decoder for a whole data set, against per-item files and codecs.

The benchmark cuts its own data from ``../shared/data/kodak``, 64x64 and 128x128 crops
(``--sizes``): the training items are crops of kodim01-06 every 32 pixels
(``--train-stride``: overlapping; 2,070 at 64x64, 1,638 at 128x128), the
evaluation items the non-overlapping grid crops of kodim07-08 (192 and 48), which no
training crop touches; ``--train-crops`` / ``--eval-crops`` draw a seeded subset. They are
written as PNGs into the work folder (``--work``, default a temporary one), so that neurep
reads files, named ``k07_64_128.png`` (image, row, column), short since shards store names.

Per crop size and embedding width (``--widths``, embedding channels, 4, 8 and 16; and
``--s3k-widths``, 16, with LPNet-S3K instead of LPNet-Conv at the first size), in one run,
one after another:

* ``neurep.fit_collection`` on the training crops (``--epochs``, ``--batch`` 32, no
  refinement), timed: the shared model's fit time (``fit_record["wall_time_s"]``) and
  the call's wall clock;
* the folder is copied, then ``neurep.append`` puts the evaluation crops into the fitted
  collection without refinement, and into the copy with ``refine_steps=--refine-steps``
  (30), each timed by wall clock around the call: items/s embedded;
* bytes per evaluation item: the marginal figure, the growth of the shard files over the
  append divided by the items appended (the manifest's growth is reported apart), and the
  amortised one, model + manifest + every shard over all items (training + evaluation);
* PSNR and MS-SSIM: the mean over evaluation items of ``record(i)``; for
  ``--check-items`` (3) of them the PSNR is recomputed from ``collection[i].decode()``
  and the PNG's pixels, and must agree within 0.01 dB.

Beside them, on the same evaluation crops: per-item ``.nrep`` files, ``neurep.convert`` of
a seeded subset (``--per-item``: 32 at 64x64, 16 at 128x128) with ``--per-item-preset``
(``balanced``), ``batch=16``, mean bytes (the files' sizes) and PSNR from ``index.jsonl``;
and Pillow JPEG (``optimize=True``, quality 1-95) and WebP (quality 0-100) of every
evaluation crop: per quality, the mean bytes and the mean PSNR (RGB, uint8, over all
pixels). A codec's PSNR "at the same bytes" is interpolated linearly in bytes between the
two neighbouring qualities whose mean bytes bracket the collection's marginal bytes per
item (the best such pair where the sizes are not monotonic in quality); below the codec's
smallest file (JPEG's headers alone put a floor near 330 bytes at 64x64) it is null, with
the codec's smallest mean bytes and their PSNR beside it.

The acceptance, on evaluation crops (images not trained on), per size and width: (a)
marginal bytes per item at most 1/20 of the per-item ``.nrep`` files' mean bytes, (b)
PSNR at least JPEG's at the same bytes per item (without refinement, and with it), (c) at
least 100 items/s embedded without refinement. Writes results/collections.json (``--out``;
rewritten after every width) and results/collections.png (PSNR against bytes per item,
one panel per size); progress to stderr, the summary to stdout.

The default fit of a shared model is about 1,500 steps (``fit_collection``'s epochs), per
size and width: an hour or more in all on 2 cores; ``--steps`` (per size), ``--epochs`` and
``--widths`` shorten it. Items/s
are wall-clock figures of one call each: on a busy machine they vary a lot (the load
average at start and end is recorded).

    ./dev bench collections                    # every crop, widths 4, 8, 16
    ./dev bench collections --train-crops 192 --eval-crops 64 --epochs 40   # shorter
    ./dev bench collections --quick            # 64x64: 48 + 16 crops, width 8, 2 epochs: ~20 s
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import numbers
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classic_codecs import load_rgb, psnr_uint8
from convert import KODAK, index_rows
from machine import machine_facts

import neurep

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRAIN_IMAGES = tuple(f"kodim{i:02d}.png" for i in range(1, 7))
EVAL_IMAGES = ("kodim07.png", "kodim08.png")
#: Pillow's quality settings swept per codec (both ends included).
QUALITIES = {"jpeg": range(1, 96), "webp": range(0, 101)}
#: The issue's acceptance, on crops of images not trained on.
TARGETS = {
    "bytes_over_per_item_at_most": 1 / 20,
    "psnr_minus_jpeg_at_least_db": 0.0,
    "embed_items_per_s_at_least": 100.0,
}
#: How far record(i)["psnr"] may be from the PSNR recomputed from the decoded pixels.
PSNR_CHECK_DB = 0.01
DEFAULT_PER_ITEM = {64: 32, 128: 16}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- data -----------------------------------------------------------------------------------


def grid_crops(
    folder: Path,
    images: Sequence[str],
    size: int,
    count: int | None,
    seed: int,
    stride: int | None = None,
) -> list[Path]:
    """The ``size`` x ``size`` crops of ``images`` on a grid of ``stride`` (default
    ``size``: non-overlapping) as PNGs in ``folder`` (kept when already there): all of
    them, or ``count`` drawn without replacement (``numpy.random.default_rng(seed)``), in
    grid order. Returns the paths."""
    stride = stride or size
    cells = []
    for name in images:
        with Image.open(KODAK / name) as image:
            width, height = image.size
        cells += [
            (name, y, x)
            for y in range(0, height - size + 1, stride)
            for x in range(0, width - size + 1, stride)
        ]
    if count is not None and count < len(cells):
        picked = sorted(np.random.default_rng(seed).choice(len(cells), size=count, replace=False))
        cells = [cells[i] for i in picked]
    elif count is not None and count > len(cells):
        raise SystemExit(f"only {len(cells)} {size}x{size} grid crops in {', '.join(images)}")
    folder.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, np.ndarray] = {}
    paths = []
    for name, y, x in cells:
        path = folder / f"k{Path(name).stem[-2:]}_{y}_{x}.png"  # short: shards store names
        if not path.is_file():
            if name not in pictures:
                pictures[name] = load_rgb(KODAK / name)
            Image.fromarray(pictures[name][y : y + size, x : x + size]).save(path)
        paths.append(path)
    return paths


# ---- JPEG and WebP --------------------------------------------------------------------------


def encode(pixels: np.ndarray, codec: str, quality: int) -> bytes:
    """Pillow's JPEG (``optimize=True``) or WebP (defaults) at ``quality``."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="RGB")
    if codec == "jpeg":
        image.save(buffer, format="JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


def codec_sweep(crops: Sequence[np.ndarray], codec: str) -> list[dict[str, float]]:
    """Per quality: the mean bytes and the mean PSNR over ``crops`` (decoded to RGB)."""
    points = []
    for quality in QUALITIES[codec]:
        sizes, psnrs = [], []
        for pixels in crops:
            data = encode(pixels, codec, quality)
            with Image.open(io.BytesIO(data)) as image:
                decoded = np.asarray(image.convert("RGB"))
            sizes.append(len(data))
            psnrs.append(psnr_uint8(pixels, decoded))
        points.append(
            {
                "quality": quality,
                "mean_bytes": statistics.fmean(sizes),
                "mean_psnr": statistics.fmean(psnrs),
                "min_bytes": min(sizes),
                "max_bytes": max(sizes),
            }
        )
    return points


def at_bytes(sweep: Sequence[dict], target: float | None) -> dict[str, Any]:
    """The codec's mean PSNR at ``target`` mean bytes per item, linear in bytes between two
    neighbouring qualities whose mean bytes bracket it (the best pair, should the sizes
    not be monotonic in quality); ``psnr`` null outside the sweep's range."""
    smallest = min(sweep, key=lambda p: p["mean_bytes"])
    largest = max(sweep, key=lambda p: p["mean_bytes"])
    out: dict[str, Any] = {
        "bytes": target,
        "psnr": None,
        "qualities": None,
        "smallest_mean_bytes": smallest["mean_bytes"],
        "psnr_at_smallest": smallest["mean_psnr"],
        "quality_at_smallest": smallest["quality"],
        "note": None,
    }
    if target is None:
        return out
    if target < smallest["mean_bytes"]:
        out["note"] = (
            f"below the codec's smallest files: quality {smallest['quality']} gives "
            f"{smallest['mean_bytes']:.0f} B per item on average ({smallest['mean_psnr']:.2f} dB)"
        )
        return out
    if target > largest["mean_bytes"]:
        out["note"] = (
            f"above the codec's largest files ({largest['mean_bytes']:.0f} B at quality "
            f"{largest['quality']})"
        )
        return out
    best = None
    for low, high in itertools.pairwise(sweep):
        a, b = low["mean_bytes"], high["mean_bytes"]
        if min(a, b) <= target <= max(a, b):
            t = 0.0 if a == b else (target - a) / (b - a)
            psnr = low["mean_psnr"] + t * (high["mean_psnr"] - low["mean_psnr"])
            if best is None or psnr > best[0]:
                best = (psnr, [low["quality"], high["quality"]])
    if best is not None:
        out["psnr"], out["qualities"] = best
    return out


# ---- neurep ---------------------------------------------------------------------------------


def total_bytes(paths: Sequence[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def collection_bytes(collection) -> dict[str, int]:
    files = collection.files()
    return {
        "model": Path(files["model"]).stat().st_size,
        "manifest": Path(files["manifest"]).stat().st_size,
        "shards": total_bytes(files["shards"]),
        "shard_files": len(files["shards"]),
    }


def _mean(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if isinstance(v, numbers.Real) and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def check_psnr(collection, indices: Sequence[int], pngs: Sequence[Path]) -> list[dict]:
    """For each collection index and its PNG: record(i)["psnr"] against the PSNR of
    ``collection[i].decode()`` and the PNG's pixels, computed here; AssertionError when
    they differ by more than :data:`PSNR_CHECK_DB`."""
    checks = []
    for index, png in zip(indices, pngs, strict=True):
        decoded = np.asarray(collection[index].decode())
        original = load_rgb(png)
        assert decoded.shape == original.shape and decoded.dtype == np.uint8, (
            f"item {index} decodes to {decoded.dtype} {decoded.shape}, "
            f"its PNG is {original.dtype} {original.shape}"
        )
        ours = psnr_uint8(original, decoded)
        recorded = collection.record(index)["psnr"]
        checks.append({"index": index, "name": png.name, "record": recorded, "recomputed": ours})
        assert recorded is not None and abs(recorded - ours) <= PSNR_CHECK_DB, (
            f"{png.name} (item {index}): record psnr {recorded} but {ours:.4f} dB recomputed "
            "from decode() and the PNG"
        )
    return checks


def append_and_measure(
    folder: Path, pngs: list[Path], refine_steps: int, before: dict[str, int], args
) -> dict[str, Any]:
    """``neurep.append`` the evaluation PNGs into the fitted collection at ``folder``,
    timed; its bytes, quality (and a self-check of it) and speed."""
    count_before = len(neurep.load(folder))
    started = time.perf_counter()
    collection = neurep.append(
        folder, [str(p) for p in pngs], refine_steps=refine_steps, progress=False
    )
    seconds = time.perf_counter() - started
    indices = list(range(count_before, len(collection)))
    assert len(indices) == len(pngs), (len(indices), len(pngs))
    names = list(collection.names[count_before:])
    if names and names[0] not in (pngs[0].name, pngs[0].stem, str(pngs[0])):
        log(f"note: appended items are named like {names[0]!r}, not after their files")
    records = [collection.record(i) for i in indices]
    after = collection_bytes(collection)
    added = after["shards"] - before["shards"]
    rng = np.random.default_rng(args.seed)
    checked = sorted(rng.choice(len(pngs), size=min(args.check_items, len(pngs)), replace=False))
    checks = check_psnr(collection, [indices[i] for i in checked], [pngs[i] for i in checked])
    psnrs = [r.get("psnr") for r in records]
    return {
        "refine_steps": refine_steps,
        "items": len(pngs),
        "append_s": seconds,
        "items_per_s": len(pngs) / seconds if seconds > 0 else None,
        "marginal_bytes_per_item": added / len(pngs),
        "manifest_bytes_per_item_added": (after["manifest"] - before["manifest"]) / len(pngs),
        "amortised_bytes_per_item": (after["model"] + after["manifest"] + after["shards"])
        / len(collection),
        "items_in_collection": len(collection),
        "bytes_after": after,
        "mean_psnr": _mean(psnrs),
        "min_psnr": min((p for p in psnrs if p is not None), default=None),
        "mean_ms_ssim": _mean([r.get("ms_ssim") for r in records]),
        "psnr_checks": checks,
        "shards_used": sorted({str(r.get("shard")) for r in records}),
    }


def measure_collection(
    size: int,
    width: int,
    train: list[Path],
    evaluation: list[Path],
    work: Path,
    args,
    projection: str = "conv",
) -> dict[str, Any]:
    """Fit a collection of ``width`` embedding channels on ``train``; append
    ``evaluation`` to it without refinement and to a copy with refinement."""
    tag = "" if projection == "conv" else f"_{projection}"
    folder = work / f"col{size}_w{width}{tag}"
    refined = work / f"col{size}_w{width}{tag}_refine{args.refine_steps}"
    for old in (folder, refined):
        if old.exists():
            shutil.rmtree(old)
    log(f"[{size}] width {width}: fitting the shared model on {len(train)} crops")
    started = time.perf_counter()
    collection = neurep.fit_collection(
        [str(p) for p in train],
        folder,
        embedding_channels=width,
        projection=projection,
        epochs=args.epochs
        if args.epochs is not None or args.steps is None
        else max(1, round(args.steps / math.ceil(len(train) / args.batch))),
        batch=args.batch,
        seed=args.seed,
        progress=False,
    )
    fit_wall = time.perf_counter() - started
    fit_record = dict(collection.fit_record)
    before = collection_bytes(collection)
    train_psnr = _mean([collection.record(i).get("psnr") for i in range(len(collection))])
    log(
        f"[{size}] width {width}: fitted in {fit_wall:.1f} s (model "
        f"{fit_record.get('wall_time_s')} s), {before['model']:,} B model, train PSNR "
        f"{_fmt(train_psnr, '.2f')} dB"
    )
    shutil.copytree(folder, refined)
    row: dict[str, Any] = {
        "size": size,
        "embedding_channels": width,
        "projection": projection,
        "train_items": len(train),
        "eval_items": len(evaluation),
        "fit_wall_s": fit_wall,
        "fit_model_s": fit_record.get("wall_time_s"),
        "fit_record": fit_record,
        "bytes_after_fit": before,
        "train_mean_psnr": train_psnr,
    }
    for key, target, steps in (("plain", folder, 0), ("refined", refined, args.refine_steps)):
        result = append_and_measure(target, evaluation, steps, before, args)
        row[key] = result
        log(
            f"[{size}] width {width}, refine {steps}: {result['items_per_s']:.1f} items/s, "
            f"{result['marginal_bytes_per_item']:.1f} B per item (amortised "
            f"{result['amortised_bytes_per_item']:.1f}), PSNR {_fmt(result['mean_psnr'], '.2f')}"
            f" dB; PSNR check on {len(result['psnr_checks'])} items passed"
        )
    return row


def measure_per_item(size: int, evaluation: list[Path], work: Path, args) -> dict[str, Any]:
    """Per-item ``.nrep`` files of a seeded subset of the evaluation crops."""
    count = args.per_item if args.per_item is not None else DEFAULT_PER_ITEM.get(size, 16)
    count = min(count, len(evaluation))
    rng = np.random.default_rng(args.seed + size)
    subset = [evaluation[i] for i in sorted(rng.choice(len(evaluation), count, replace=False))]
    source = work / f"peritem{size}_src"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for png in subset:
        shutil.copyfile(png, source / png.name)
    out = work / f"peritem{size}_{args.per_item_preset}"
    if out.exists():
        shutil.rmtree(out)
    options: dict[str, Any] = {"preset": args.per_item_preset, "seed": args.seed}
    if args.per_item_steps:
        options["steps"] = args.per_item_steps
    log(f"[{size}] per-item .nrep: converting {count} crops ({options})")
    started = time.perf_counter()
    neurep.convert(source, out, batch=16, progress=False, **options)
    seconds = time.perf_counter() - started
    ok = [r for r in index_rows(out) if r.get("status") == "ok"]
    files = [out / r["output"] for r in ok]
    row = {
        "size": size,
        "items": len(ok),
        "failed": count - len(ok),
        "options": options,
        "seconds": seconds,
        "mean_bytes": statistics.fmean(p.stat().st_size for p in files) if ok else None,
        "mean_index_bytes": _mean([r.get("bytes") for r in ok]),
        "mean_psnr": _mean([(r.get("quality") or {}).get("psnr") for r in ok]),
        "mean_ms_ssim": _mean([(r.get("quality") or {}).get("ms_ssim") for r in ok]),
        "mean_fit_s": _mean([r.get("fit_s") for r in ok]),
        "names": [p.name for p in subset],
    }
    log(
        f"[{size}] per-item .nrep: {row['items']} items, {_fmt(row['mean_bytes'], ',.0f')} B, "
        f"PSNR {_fmt(row['mean_psnr'], '.2f')} dB, {seconds:.1f} s"
    )
    return row


# ---- summary and plot -----------------------------------------------------------------------


def judge(size_result: dict[str, Any]) -> list[dict[str, Any]]:
    """The three targets for each width of one crop size."""
    per_item = size_result["per_item"]
    sweeps = size_result["codecs"]
    verdicts = []
    for row in size_result["collections"]:
        verdict: dict[str, Any] = {
            "size": size_result["size"],
            "width": row["embedding_channels"],
            "projection": row.get("projection", "conv"),
        }
        plain = row["plain"]
        ratio = (
            plain["marginal_bytes_per_item"] / per_item["mean_bytes"]
            if per_item.get("mean_bytes")
            else None
        )
        verdict["a_bytes_per_item_marginal"] = plain["marginal_bytes_per_item"]
        verdict["a_bytes_per_item_amortised"] = plain["amortised_bytes_per_item"]
        verdict["a_per_item_nrep_bytes"] = per_item.get("mean_bytes")
        verdict["a_ratio_marginal"] = ratio
        verdict["a_ratio_amortised"] = (
            plain["amortised_bytes_per_item"] / per_item["mean_bytes"]
            if per_item.get("mean_bytes")
            else None
        )
        verdict["a_pass"] = (
            None if ratio is None else bool(ratio <= TARGETS["bytes_over_per_item_at_most"])
        )
        for key, suffix in (("plain", ""), ("refined", "_refined")):
            result = row[key]
            jpeg = at_bytes(sweeps["jpeg"], result["marginal_bytes_per_item"])
            webp = at_bytes(sweeps["webp"], result["marginal_bytes_per_item"])
            psnr = result["mean_psnr"]
            verdict[f"b_psnr{suffix}"] = psnr
            verdict[f"b_jpeg_psnr_at_bytes{suffix}"] = jpeg["psnr"]
            verdict[f"b_webp_psnr_at_bytes{suffix}"] = webp["psnr"]
            if jpeg["psnr"] is not None and psnr is not None:
                margin = psnr - jpeg["psnr"]
                verdict[f"b_margin_db{suffix}"] = margin
                verdict[f"b_pass{suffix}"] = bool(margin >= TARGETS["psnr_minus_jpeg_at_least_db"])
            else:
                verdict[f"b_margin_db{suffix}"] = None
                # Smaller than JPEG's smallest file and still better than it: at least JPEG.
                dominates = (
                    psnr is not None
                    and jpeg["note"] is not None
                    and jpeg["note"].startswith("below")
                    and psnr >= jpeg["psnr_at_smallest"]
                )
                verdict[f"b_pass{suffix}"] = True if dominates else None
                verdict[f"b_note{suffix}"] = f"JPEG: {jpeg['note']}" + (
                    "; the collection is smaller and better than that" if dominates else ""
                )
        speed = plain["items_per_s"]
        verdict["c_items_per_s"] = speed
        verdict["c_items_per_s_refined"] = row["refined"]["items_per_s"]
        verdict["c_pass"] = (
            None if speed is None else bool(speed >= TARGETS["embed_items_per_s_at_least"])
        )
        verdict["fit_model_s"] = row["fit_model_s"]
        verdict["fit_wall_s"] = row["fit_wall_s"]
        verdict["all_pass"] = (
            all(verdict[k] for k in ("a_pass", "b_pass", "c_pass"))
            if None not in (verdict["a_pass"], verdict["b_pass"], verdict["c_pass"])
            else None
        )
        verdicts.append(verdict)
    return verdicts


def plot(sizes: Sequence[dict], out: Path) -> Path:
    figure = Figure(figsize=(6.5 * max(1, len(sizes)), 4.8))
    FigureCanvasAgg(figure)
    for panel, result in enumerate(sizes):
        ax = figure.add_subplot(1, max(1, len(sizes)), panel + 1)
        everything = sorted(result["collections"], key=lambda r: r["embedding_channels"])
        rows = [r for r in everything if r.get("projection", "conv") == "conv"]
        for r in everything:
            if r.get("projection", "conv") != "conv":
                ax.scatter(
                    [r["plain"]["marginal_bytes_per_item"]],
                    [r["plain"]["mean_psnr"]],
                    marker="v",
                    color="tab:purple",
                    zorder=5,
                    label=f"collection, LPNet-{r['projection'].upper()} w{r['embedding_channels']}",
                )
        for key, style, label in (
            ("plain", "o-", "collection"),
            ("refined", "s--", f"collection, refine {result['refine_steps']}"),
        ):
            xs = [r[key]["marginal_bytes_per_item"] for r in rows]
            ys = [r[key]["mean_psnr"] for r in rows]
            ax.plot(
                xs,
                ys,
                style,
                linewidth=2,
                markerfacecolor="none" if key == "refined" else None,
                label=f"{label} (marginal bytes)",
                zorder=4,
            )
        for r, x, y in zip(
            rows,
            [r["plain"]["marginal_bytes_per_item"] for r in rows],
            [r["plain"]["mean_psnr"] for r in rows],
            strict=True,
        ):
            if y is not None:
                ax.annotate(
                    f"w{r['embedding_channels']}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=7,
                )
        ax.plot(
            [r["plain"]["amortised_bytes_per_item"] for r in rows],
            [r["plain"]["mean_psnr"] for r in rows],
            "o:",
            color="tab:blue",
            alpha=0.5,
            label="collection (amortised bytes)",
        )
        per_item = result["per_item"]
        if per_item.get("mean_bytes") and per_item.get("mean_psnr") is not None:
            ax.scatter(
                [per_item["mean_bytes"]],
                [per_item["mean_psnr"]],
                marker="*",
                s=120,
                color="tab:red",
                edgecolors="black",
                zorder=5,
                label=f"per-item .nrep ({per_item['options']['preset']}, "
                f"{per_item['items']} crops)",
            )
        for codec, name, colour in (("jpeg", "JPEG", "tab:gray"), ("webp", "WebP", "tab:olive")):
            sweep = result["codecs"][codec]
            ax.plot(
                [p["mean_bytes"] for p in sweep],
                [p["mean_psnr"] for p in sweep],
                "-",
                color=colour,
                linewidth=1.2,
                label=f"{name} (Pillow), quality {sweep[0]['quality']}-{sweep[-1]['quality']}",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bytes per item (mean)")
        ax.set_ylabel("PSNR-RGB [dB] (mean over items)")
        ax.set_title(
            f"{result['size']}x{result['size']} crops: {result['eval_items']} evaluation items "
            f"(kodim07-08), trained on {result['train_items']} (kodim01-06)",
            fontsize=9,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return out


# ---- main -----------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    return machine_facts(pillow=Image.__version__)


def summarise(sizes: Sequence[dict]) -> dict[str, Any]:
    verdicts = [v for result in sizes for v in judge(result)]
    return {
        "targets": TARGETS,
        "bytes": "a_* and b_*: marginal bytes per evaluation item (shard growth over the "
        "append / items appended); amortised: (model + manifest + shards) / all items",
        "per_width": verdicts,
        "all_targets_met_by": [
            f"{v['size']}x{v['size']} w{v['width']} {v['projection']}"
            for v in verdicts
            if v["all_pass"]
        ],
    }


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,128", help="crop sizes (64,128)")
    parser.add_argument("--widths", default="4,8,16", help="embedding channels (4,8,16)")
    parser.add_argument(
        "--s3k-widths",
        default="16",
        help="widths also fitted with LPNet-S3K (projection='s3k'), at the first size only",
    )
    parser.add_argument(
        "--train-stride",
        type=int,
        default=32,
        help="pixels between training crops (32: overlapping; evaluation crops never overlap)",
    )
    parser.add_argument("--train-crops", type=int, default=None, help="subsample (all)")
    parser.add_argument("--eval-crops", type=int, default=None, help="subsample (all)")
    parser.add_argument("--epochs", type=int, default=None, help="fit_collection's (default)")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps instead of --epochs, per size"
    )
    parser.add_argument("--batch", type=int, default=32, help="fit_collection's batch (32)")
    parser.add_argument("--refine-steps", type=int, default=30, help="append's refinement (30)")
    parser.add_argument("--per-item", type=int, default=None, help="per-item crops (32, 16)")
    parser.add_argument("--per-item-preset", default="balanced", help="per-item preset")
    parser.add_argument("--per-item-steps", type=int, default=None, help="override its steps")
    parser.add_argument("--check-items", type=int, default=3, help="PSNR recomputed for N")
    parser.add_argument("--seed", type=int, default=0, help="crop subsets and fits")
    parser.add_argument("--work", type=Path, default=None, help="data folder (kept)")
    parser.add_argument("--out", type=Path, default=None, help="JSON (results/collections.json)")
    parser.add_argument(
        "--quick", action="store_true", help="64x64, 48 + 16 crops, width 8, 2 epochs, temp dir"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.widths, args.epochs, args.refine_steps = "64", "8", 2, 5
        args.s3k_widths = ""
        args.train_crops = args.train_crops or 48
        args.eval_crops = args.eval_crops or 16
        args.per_item = args.per_item or 4
        args.per_item_steps = args.per_item_steps or 20
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="collections_quick_")) / "collections.json"
    out_json = args.out or RESULTS / "collections.json"
    missing = [n for n in TRAIN_IMAGES + EVAL_IMAGES if not (KODAK / n).is_file()]
    if missing:
        log(f"needs {', '.join(missing)} in {KODAK.resolve()}")
        return 2
    sizes, widths = parse_ints(args.sizes), parse_ints(args.widths)
    s3k_widths = parse_ints(args.s3k_widths)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "collections",
        "environment": environment(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {
            "source": str(KODAK.resolve()),
            "train_images": list(TRAIN_IMAGES),
            "eval_images": list(EVAL_IMAGES),
            "how": "non-overlapping grid crops, PNG; --train-crops/--eval-crops draw seeded "
            "subsets",
        },
        "timing": "wall clock around each call (progress=False); items_per_s = items "
        "appended / seconds of neurep.append; fit_model_s = fit_record['wall_time_s']",
        "codecs": "Pillow JPEG optimize=True q1-95, WebP q0-100; mean bytes and mean PSNR "
        "(RGB uint8) over the evaluation crops per quality; 'at the same bytes' "
        "interpolated linearly in bytes between bracketing qualities",
        "targets": TARGETS,
        "sizes": [],
        "summary": {},
    }
    log(f"collections: sizes {sizes}, widths {widths} -> {out_json}")
    with tempfile.TemporaryDirectory(prefix="neurep_collections_bench_") as directory:
        work = args.work or Path(directory)
        for size in sizes:
            stride = args.train_stride
            train = grid_crops(
                work / f"train{size}_s{stride}",
                TRAIN_IMAGES,
                size,
                args.train_crops,
                args.seed,
                stride,
            )
            evaluation = grid_crops(
                work / f"eval{size}", EVAL_IMAGES, size, args.eval_crops, args.seed + 1
            )
            log(f"[{size}] {len(train)} training crops, {len(evaluation)} evaluation crops")
            pixels = [load_rgb(p) for p in evaluation]
            started = time.perf_counter()
            codecs = {codec: codec_sweep(pixels, codec) for codec in QUALITIES}
            log(f"[{size}] JPEG and WebP sweeps in {time.perf_counter() - started:.1f} s")
            result: dict[str, Any] = {
                "size": size,
                "train_items": len(train),
                "eval_items": len(evaluation),
                "refine_steps": args.refine_steps,
                "codecs": codecs,
                "per_item": {},
                "collections": [],
            }
            report["sizes"].append(result)
            result["per_item"] = measure_per_item(size, evaluation, work, args)
            runs = [(width, "conv") for width in widths]
            runs += [(width, "s3k") for width in s3k_widths if size == sizes[0]]
            for width, projection in runs:
                result["collections"].append(
                    measure_collection(size, width, train, evaluation, work, args, projection)
                )
                report["summary"] = summarise(report["sizes"])
                out_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["environment"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["summary"] = summarise(report["sizes"])
    out_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out_png = plot(report["sizes"], out_json.with_suffix(".png"))
    log(f"wrote {out_json} and {out_png}")
    print(json.dumps(report["summary"], indent=2, default=str))
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
