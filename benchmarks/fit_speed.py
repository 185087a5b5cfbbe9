"""Fit speed: S3K against nn.Conv2d at LPNet's first Kodak stage, whole Kodak fits, a profile.

    .venv/bin/python benchmarks/fit_speed.py                        # all parts, kodim01-08
    .venv/bin/python benchmarks/fit_speed.py --parts layer,profile  # a few minutes
    .venv/bin/python benchmarks/fit_speed.py --parts fits --images 2 --baseline-tree ../old
    .venv/bin/python benchmarks/fit_speed.py --parts fits --configurations "paper S3K,paper Conv" \
        --variant 'paper S3K (C=16)=paper:{"s3k_hidden_channels": 16}' --out /tmp/paper_c16.json

Parts (``--parts``, comma-separated):

- ``layer``: the first LPNet-S3K stage on a 768x512 RGB image, as the ``paper`` preset
  builds it (window 32, 8 states) and as the default builds it (window 8, 16 states, state
  norm, LPNet's chunk size), against ``nn.Conv2d`` with the same window and stride; forward
  plus backward with the input requiring a gradient and not (a first stage reads the image
  pyramid, which needs none); S3K with LPNet's chunk size and with small chunks
  (``chunk_elements=2^16``: bounded memory, more passes). Repetitions interleaved, medians;
  peak memory from the profiler's allocation events. All run under the settings fits use
  (:func:`neurep.fitting.cpu.fit_settings`).
- ``fits``: kodim01-08 (``--images``) fitted with the default preset, LPNet-Conv at the same
  settings, the ``paper`` preset and LPNet-Conv's paper preset, interleaved image by image,
  each in a fresh subprocess; fit wall time and PSNR of the decoded file. With
  ``--baseline-tree DIR`` (a checkout of an older commit) every fit is also run with that
  code, right after the same fit with this one, so both see the same machine
  (``--baseline-images N``: on the first N images only). ``--configurations`` picks which
  of the four; ``--variant NAME=PRESET:JSON`` (repeatable) adds a configuration: PRESET with
  those image-profile settings (NAME may hold ``=``, not ``:``).
- ``profile``: ``fit_signal`` of the default preset on kodim01 for ``--profile-steps`` steps
  under ``torch.profiler``: the ops with the most self CPU time (run it with an older
  tree's code through ``--baseline-tree`` for the "before").

Prints JSON and writes ``--out`` (default ``benchmarks/results/fit_speed.json``), updated after
every fit so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from machine import machine_facts  # noqa: E402
from s3k_vs_conv import peak_bytes  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results"
TIME_TARGET, MEMORY_TARGET = 1.5, 2.0  # S3K / conv at the first stage, no input gradient
DEFAULT_FIT_TARGET_S, PAPER_RATIO_TARGET = 40.0, 1.5
CONFIGURATIONS = {
    "default S3K": "balanced",
    "default Conv": "balanced-conv",
    "paper S3K": "paper",
    "paper Conv": "paper-conv",
}

#: name -> S3K settings of the first stage, as LPNetEncoder builds it for a 768x512 image.
#: S3K's chunk size for the memory-bounded variant (LPNet's own makes a Kodak level one chunk).
SMALL_CHUNKS = 1 << 16
LAYER_CASES = {
    "paper_first_stage": {"window": 32, "state_size": 8, "state_norm": False},
    "default_first_stage": {"window": 8, "state_size": 16, "state_norm": True},
    # as the `paper` preset builds it on images: both norms, a 6-channel input map
    "paper_preset_first_stage": {
        "window": 32,
        "state_size": 8,
        "state_norm": True,
        "hidden_channels": 6,
    },
}

#: Runs one fit in a subprocess with whatever neurep is first on sys.path; prints JSON.
_FIT_RUNNER = r"""
import json, sys, time
import numpy as np
from PIL import Image
import neurep
image, preset, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
if overrides:  # settings of the preset's image profile, for variants of a preset
    from dataclasses import replace
    from neurep.fitting.presets import get_preset
    preset = get_preset(preset)
    profiles = {**preset.profiles, "image": {**preset.profiles["image"], **overrides}}
    preset = replace(preset, profiles=profiles)
original = np.asarray(Image.open(image).convert("RGB"))
started = time.perf_counter()
datum = neurep.fit(original, preset=preset, seed=seed, progress=False)
seconds = time.perf_counter() - started
decoded = datum.decode().astype(np.float64)
mse = np.mean((decoded - original.astype(np.float64)) ** 2)
print(json.dumps({"fit_seconds": seconds, "psnr": 10 * np.log10(255.0**2 / mse),
                  "steps": datum.metadata["fit"]["steps"]}))
"""

_PROFILE_RUNNER = r"""
import json, sys
import numpy as np, torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from neurep.fitting import get_preset, plan
from neurep.fitting.loop import fit_signal
image, steps, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pixels = np.asarray(Image.open(image).convert("RGB"))
signal = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].contiguous()
models = plan(get_preset("balanced").for_profile("image"), 3, tuple(signal.shape[2:]))
fit_signal(signal, models, steps=2, progress=False)  # warm-up
with profile(activities=[ProfilerActivity.CPU]) as prof:
    result = fit_signal(signal, models, steps=steps, progress=False)
events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
total = sum(e.self_cpu_time_total for e in events)
print(json.dumps({
    "steps": steps, "wall_s_under_profiler": result.wall_time_s,
    "self_cpu_ms_per_step": total / 1e3 / steps,
    "top_ops": [{"op": e.key,
                 "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2),
                 "share": round(e.self_cpu_time_total / total, 4),
                 "calls_per_step": e.count / steps} for e in events[:rows]]}))
"""


def _in_subprocess(runner: str, args: list[str], tree: Path) -> dict:
    """Run ``runner`` with ``tree``'s neurep first on the path; its last stdout line as JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", runner, *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit(tree: Path) -> str | None:
    """The checked-out commit of ``tree`` (None outside git)."""
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


# -- layer ------------------------------------------------------------------------------------
def _layer_pair(case: dict) -> dict[str, nn.Module]:
    from neurep.models.encoders import S3K_CHUNK_ELEMENTS
    from neurep.nn import S3KConv2d

    torch.manual_seed(0)
    window = case["window"]
    hidden = case.get("hidden_channels", 3)
    return {
        "conv": nn.Conv2d(3, 64, window, stride=window),
        **{
            name: S3KConv2d(
                3,
                64,
                window,
                state_size=case["state_size"],
                state_norm=case["state_norm"],
                hidden_channels=hidden,
                # as LPNetEncoder: the same input rows per chunk whatever C
                chunk_elements=chunk * hidden // 3,
            )
            for name, chunk in (("s3k", S3K_CHUNK_ELEMENTS), ("s3k_small_chunks", SMALL_CHUNKS))
        },
    }


def bench_layer(repeats: int) -> dict:
    from neurep.fitting.cpu import fit_settings

    results = {}
    with fit_settings():
        for name, case in LAYER_CASES.items():
            layers = _layer_pair(case)
            modes = {}
            for input_grad in (False, True):
                x = torch.rand(1, 3, 512, 768).contiguous(memory_format=torch.channels_last)
                x.requires_grad_(input_grad)

                def step(layer: nn.Module, x: torch.Tensor = x) -> None:
                    layer.zero_grad(set_to_none=True)
                    x.grad = None
                    layer(x).square().mean().backward()

                for layer in layers.values():
                    step(layer)
                    step(layer)
                times: dict[str, list[float]] = {key: [] for key in layers}
                for r in range(repeats):
                    for key in list(layers) if r % 2 == 0 else list(reversed(layers)):
                        started = time.perf_counter()
                        step(layers[key])
                        times[key].append((time.perf_counter() - started) * 1e3)
                peaks = {
                    key: peak_bytes(lambda layer=layer: step(layer))
                    for key, layer in layers.items()
                }
                median = {key: statistics.median(values) for key, values in times.items()}
                modes["input_requires_grad" if input_grad else "input_no_grad"] = {
                    key: {
                        "median_ms": round(median[key], 3),
                        "peak_bytes": peaks[key],
                        "time_ratio": round(median[key] / median["conv"], 2),
                        "peak_ratio": round(peaks[key] / max(peaks["conv"], 1), 2),
                    }
                    for key in layers
                }
            results[name] = {**case, "input_shape": [1, 3, 512, 768], "modes": modes}
            print(json.dumps({name: modes}), flush=True)
    return results


# -- fits -------------------------------------------------------------------------------------
def summarise_fits(rows: list[dict]) -> dict:
    summary: dict = {}
    names = list(dict.fromkeys(r["configuration"] for r in rows))
    for code in sorted({r["code"] for r in rows}):
        for name in names:
            mine = [r for r in rows if r["configuration"] == name and r["code"] == code]
            if mine:
                summary[f"{name} ({code})"] = {
                    "images": len(mine),
                    "median_fit_seconds": round(
                        statistics.median(r["fit_seconds"] for r in mine), 2
                    ),
                    "mean_psnr": round(statistics.fmean(r["psnr"] for r in mine), 3),
                }
        default = summary.get(f"default S3K ({code})")
        paper_conv = summary.get(f"paper Conv ({code})")
        if paper_conv:
            for name in names:
                mine = summary.get(f"{name} ({code})")
                if name.startswith("paper S3K") and mine:
                    ratio = mine["median_fit_seconds"] / paper_conv["median_fit_seconds"]
                    summary[f"{name} / Conv fit time ({code})"] = round(ratio, 2)
        if default:
            summary[f"default median fit within {DEFAULT_FIT_TARGET_S} s ({code})"] = (
                default["median_fit_seconds"] <= DEFAULT_FIT_TARGET_S
            )
    return summary


def bench_fits(
    report: dict,
    images: list[Path],
    seed: int,
    baseline: Path | None,
    baseline_images: int,
    out: Path,
    configurations: dict[str, str],
    variants: dict[str, dict],
) -> None:
    """Every configuration (name -> preset) on every image, this code and (on the first
    ``baseline_images`` images) the baseline tree's right after it; ``variants``: name ->
    image-profile settings that configuration overrides. Rows and summary written after
    each fit."""
    rows = report["fits"]["rows"]
    for index, image in enumerate(images):
        codes = {"this": REPO}
        if baseline and index < baseline_images:
            codes["baseline"] = baseline
        for name, preset in configurations.items():
            for code, tree in codes.items():
                overrides = [json.dumps(variants[name])] if name in variants else []
                arguments = [str(image), preset, str(seed), *overrides]
                measured = _in_subprocess(_FIT_RUNNER, arguments, tree)
                row = {"image": image.name, "configuration": name, "code": code, **measured}
                rows.append(row)
                report["fits"]["summary"] = summarise_fits(rows)
                out.write_text(json.dumps(report, indent=2))
                print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="layer,fits,profile")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=15, help="layer timings per variant")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument(
        "--baseline-images", type=int, default=None, help="fit the baseline on the first N only"
    )
    parser.add_argument(
        "--configurations",
        default=",".join(CONFIGURATIONS),
        help=f"which fits, comma-separated, of {', '.join(CONFIGURATIONS)}",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PRESET:JSON",
        help="also fit PRESET with these image-profile settings (JSON), e.g. "
        "'N8=balanced:{\"state_size\": 8}'",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fit_speed.json")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.configurations.split(",") if name.strip()]
    if unknown_names := sorted(set(names) - set(CONFIGURATIONS)):
        parser.error(f"unknown configurations {unknown_names}")
    configurations = {name: CONFIGURATIONS[name] for name in names}
    variants = {}
    for spec in args.variant:
        head, _, settings = spec.partition(":")
        name, _, preset = head.rpartition("=")
        if not (name and preset and settings):
            parser.error(f"--variant {spec!r}: expected NAME=PRESET:JSON")
        configurations[name] = preset
        variants[name] = json.loads(settings)
    parts = {p.strip() for p in args.parts.split(",")}
    unknown = parts - {"layer", "fits", "profile"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    images = sorted(args.data.glob("kodim*.png"))[: args.images]
    if ("fits" in parts or "profile" in parts) and not images:
        print(f"no kodim*.png under {args.data}", file=sys.stderr)
        return 1
    baseline = args.baseline_tree.resolve() if args.baseline_tree else None
    report: dict = {
        "benchmark": "fit_speed",
        "machine": machine_facts(
            seed=args.seed,
            commit=_commit(REPO),
            baseline_tree=str(baseline) if baseline else None,
            baseline_commit=_commit(baseline) if baseline else None,
        ),
        "targets": {
            "layer_time_ratio": TIME_TARGET,
            "layer_peak_ratio": MEMORY_TARGET,
            "default_median_fit_s": DEFAULT_FIT_TARGET_S,
            "paper_s3k_over_conv": PAPER_RATIO_TARGET,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if "layer" in parts:
        report["layer"] = bench_layer(args.repeats)
        args.out.write_text(json.dumps(report, indent=2))
    if "profile" in parts:
        profile_args = [str(images[0]), str(args.profile_steps), "15"]
        report["profile"] = {"this": _in_subprocess(_PROFILE_RUNNER, profile_args, REPO)}
        if baseline:
            report["profile"]["baseline"] = _in_subprocess(_PROFILE_RUNNER, profile_args, baseline)
        args.out.write_text(json.dumps(report, indent=2))
    if "fits" in parts:
        report["fits"] = {"rows": [], "summary": {}}
        baseline_images = len(images) if args.baseline_images is None else args.baseline_images
        bench_fits(
            report, images, args.seed, baseline, baseline_images, args.out, configurations, variants
        )
    print(json.dumps({k: v for k, v in report.items() if k != "fits"}, indent=2))
    if "fits" in report:
        print(json.dumps(report["fits"]["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
