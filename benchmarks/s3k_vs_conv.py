"""S3KConv2d against nn.Conv2d: forward + backward wall time and peak CPU memory.

    .venv/bin/python benchmarks/s3k_vs_conv.py [--repeats 9] [--out PATH.json]

Each case compares a plain strided convolution (same in/out channels, kernel and stride) with
three S3K variants: the fast path with the default ``chunk_elements``, the fast path in one
piece (``chunk_elements=None``) and the materialised reference (``implementation="reference"``,
one piece). Both with the input requiring grad (a layer inside a network) and not (a first
layer reading the image). Timings: warm-up, then repetitions *interleaved* across variants (so
all see the same load on a shared machine), median and min reported, ratios from medians.
Peak memory: one profiled step per variant; the running maximum of the cumulative
``self_cpu_memory_usage`` of the profiler events in start order (the bytes allocated inside the
step; the input and the parameters themselves are allocated before and not counted).

Prints JSON and writes it to ``--out``. Targets: fast S3K <= 1.5x conv time, <= 2x peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from neurep.nn import S3KConv2d

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "s3k_vs_conv.json"
TIME_TARGET, MEMORY_TARGET = 1.5, 2.0

#: name -> (input shape (B, C, H, W), window, out channels, state size, note)
CASES: dict[str, tuple[tuple[int, int, int, int], int, int, int, str]] = {
    "kodak_first_stage": ((1, 3, 512, 768), 32, 64, 8, "first LPNet-S3K stage on a Kodak image"),
    "lpnet_mid_level": (
        (1, 3, 128, 192),
        32,
        64,
        8,
        "LPNet-S3K mid-network S3K: a 3-channel Laplacian level (1/4 scale), window 32",
    ),
    "wide_window2": ((1, 64, 64, 96), 2, 64, 8, "wide features, window 2 (not used by LPNet)"),
}


def _variants(c_in: int, c_out: int, window: int, state: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    s3k = {"state_size": state}
    return {
        "conv": nn.Conv2d(c_in, c_out, window, stride=window),
        "s3k_fast": S3KConv2d(c_in, c_out, window, **s3k),
        "s3k_fast_unchunked": S3KConv2d(c_in, c_out, window, chunk_elements=None, **s3k),
        "s3k_reference": S3KConv2d(
            c_in, c_out, window, implementation="reference", chunk_elements=None, **s3k
        ),
    }


def _step(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training step's worth of work: forward, backward of the sum."""

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return run


def peak_bytes(fn: Callable[[], None]) -> int:
    """Peak bytes allocated on the CPU while ``fn`` runs (profiler memory events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def check_peak_bytes() -> None:
    """The measurement sees a known allocation: two 40 MB tensors alive together = 80 MB."""

    def known() -> None:
        a = torch.ones(10_000_000, dtype=torch.float32)
        b = torch.ones(5_000_000, dtype=torch.float64)
        del a, b

    measured = peak_bytes(known)
    if not 80_000_000 <= measured < 80_000_000 + 1_000_000:
        raise RuntimeError(f"peak_bytes check failed: measured {measured} for 80,000,000 bytes")


def bench_case(name: str, repeats: int, warmup: int) -> dict:
    shape, window, c_out, state, note = CASES[name]
    c_in = shape[1]
    layers = _variants(c_in, c_out, window, state)
    result: dict = {
        "input_shape": list(shape),
        "window": window,
        "stride": window,
        "out_channels": c_out,
        "state_size": state,
        "note": note,
        "modes": {},
    }
    for input_grad in (True, False):
        x = torch.randn(shape).requires_grad_(input_grad)
        steps = {key: _step(layer, x) for key, layer in layers.items()}
        for step in steps.values():
            for _ in range(warmup):
                step()
        times: dict[str, list[float]] = {key: [] for key in steps}
        for r in range(repeats):
            order = list(steps) if r % 2 == 0 else list(reversed(steps))  # no fixed position
            for key in order:
                start = time.perf_counter()
                steps[key]()
                times[key].append((time.perf_counter() - start) * 1e3)
        peaks = {key: peak_bytes(step) for key, step in steps.items()}
        conv_ms, conv_peak = statistics.median(times["conv"]), peaks["conv"]
        conv_min = min(times["conv"])
        mode = {}
        for key in steps:
            median = statistics.median(times[key])
            mode[key] = {
                "median_ms": round(median, 3),
                "min_ms": round(min(times[key]), 3),
                "time_ratio_vs_conv": round(median / conv_ms, 3),
                "min_time_ratio_vs_conv": round(min(times[key]) / conv_min, 3),
                "peak_bytes": peaks[key],
                "peak_ratio_vs_conv": round(peaks[key] / max(conv_peak, 1), 3),
            }
        fast = mode["s3k_fast"]
        mode["fast_meets_targets"] = {
            "time": fast["time_ratio_vs_conv"] <= TIME_TARGET,
            "memory": fast["peak_ratio_vs_conv"] <= MEMORY_TARGET,
        }
        result["modes"]["input_requires_grad" if input_grad else "input_no_grad"] = mode
    return result


def plot(results: dict, path: Path) -> None:
    """Bar chart of the time and memory ratios vs conv (Agg canvas, no pyplot; skipped
    without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return
    variants = ["s3k_fast", "s3k_fast_unchunked", "s3k_reference"]
    labels, rows = [], []
    for case, data in results["cases"].items():
        for mode, values in data["modes"].items():
            labels.append(f"{case}\n{mode.replace('input_', 'x ')}")
            rows.append(
                [
                    (values[v]["time_ratio_vs_conv"], values[v]["peak_ratio_vs_conv"])
                    for v in variants
                ]
            )
    fig = Figure(figsize=(13, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    width = 0.8 / len(variants)
    for metric, (ax, target) in enumerate(zip(axes, (TIME_TARGET, MEMORY_TARGET), strict=True)):
        for i, variant in enumerate(variants):
            xs = [j + (i - 1) * width for j in range(len(labels))]
            ax.bar(xs, [row[i][metric] for row in rows], width, label=variant)
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {target}x")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel(["wall time / conv", "peak memory / conv"][metric])
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"S3KConv2d vs nn.Conv2d, forward+backward, torch {results['torch']}, "
        f"{results['threads']} threads (log scale)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repetitions per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    check_peak_bytes()
    results = {
        "benchmark": "s3k_vs_conv",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "repeats": args.repeats,
        "warmup": args.warmup,
        "step": "layer(x).sum().backward(), parameters require grad",
        "timing": "interleaved repetitions; time_ratio = median / conv median, "
        "min_time_ratio = min / conv min (less sensitive to load spikes)",
        "peak_memory": "torch.profiler CPU: max of cumulative self_cpu_memory_usage by start",
        "targets": {"time_ratio": TIME_TARGET, "peak_ratio": MEMORY_TARGET},
        "cases": {},
    }
    for name in args.cases:
        results["cases"][name] = bench_case(name, args.repeats, args.warmup)
        print(f"done {name}", file=sys.stderr, flush=True)
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if not args.no_plot:
        plot(results, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
