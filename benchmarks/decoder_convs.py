"""The default decoder's transposed convolutions on a 768x512 fit: how fast they already run.

Each stage of the default preset's image decoder (``ConvTransposeDecoder``, kernel = stride)
is timed forward + backward (input gradient included, as in a fit) at the shapes a 768x512
image gives, under the fit settings, in both memory layouts, against the same maths as one
GEMM and a pixel shuffle (``gemm_shuffle``): what a hand-written formulation would buy.
Reported per stage: median ms over ``--repeats`` (interleaved), GFLOP/s of the transposed
convolution (3 GEMMs of ``2 * C_in * C_out * s^2 * H * W`` flops), and the largest difference
between the two outputs; beside them, the GFLOP/s of one large GEMM (what the cores can do),
and the refinement blocks between the stages (SiLU, depthwise 3x3, residual), eager and with
``--compile`` also through ``torch.compile``.

    ./dev bench decoder_convs                   # about 30 s on 2 cores
    ./dev bench decoder_convs --compile         # + torch.compile of the refinements (~1 min)

Writes results/decoder_convs.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_facts

from neurep.fitting.cpu import fit_settings

RESULTS = Path(__file__).resolve().parent / "results"
#: (C_in, C_out, stride, input H, input W): the default decoder on a 768x512 image
#: (a 12x8x16 embedding, strides 4, 4, 2, 2, widths 96, 64, 24, then RGB).
STAGES = ((16, 96, 4, 8, 12), (96, 64, 4, 32, 48), (64, 24, 2, 128, 192), (24, 3, 2, 256, 384))


def gemm_shuffle(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, s: int):
    """ConvTranspose2d(kernel = stride = s) as one GEMM: (B, C_in, H, W) -> (B, C_out, sH, sW)."""
    batch, c_in, height, width = x.shape
    c_out = weight.shape[1]
    rows = x.permute(0, 2, 3, 1).reshape(batch * height * width, c_in)
    y = (rows @ weight.reshape(c_in, c_out * s * s)).view(batch, height, width, c_out, s, s)
    y = y.permute(0, 3, 1, 4, 2, 5).reshape(batch, c_out, height * s, width * s)
    return y + bias.view(1, c_out, 1, 1)


def _stage(c_in: int, c_out: int, s: int, height: int, width: int, layout, repeats: int):
    """Median ms of each formulation (interleaved), and their largest output difference."""
    layer = torch.nn.ConvTranspose2d(c_in, c_out, s, stride=s).to(memory_format=layout)
    x = torch.randn(1, c_in, height, width).contiguous(memory_format=layout).requires_grad_(True)
    grad = torch.randn(1, c_out, height * s, width * s).contiguous(memory_format=layout)
    steps = {
        "conv_transpose": lambda: layer(x).backward(grad),
        "gemm_shuffle": lambda: gemm_shuffle(x, layer.weight, layer.bias, s).backward(grad),
    }
    for step in [*steps.values(), *steps.values()]:  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
    with torch.no_grad():
        difference = (layer(x) - gemm_shuffle(x, layer.weight, layer.bias, s)).abs().max()
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}, float(difference)


def measure(repeats: int) -> list[dict]:
    rows = []
    layouts = (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format))
    for c_in, c_out, s, height, width in STAGES:
        for layout_name, layout in layouts:
            median, difference = _stage(c_in, c_out, s, height, width, layout, repeats)
            flops = 3 * 2 * c_in * c_out * s * s * height * width
            rows.append(
                {
                    "stage": f"{c_in}->{c_out}, stride {s}, input {height}x{width}",
                    "layout": layout_name,
                    "conv_transpose_ms": round(median["conv_transpose"], 3),
                    "gemm_shuffle_ms": round(median["gemm_shuffle"], 3),
                    "conv_transpose_gflops": round(flops / median["conv_transpose"] / 1e6, 1),
                    "max_difference": difference,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


#: (C, H, W) of the refinement blocks (x + depthwise3x3(SiLU(x)) after a SiLU) of that decoder.
REFINES = ((96, 32, 48), (64, 128, 192), (24, 256, 384))


def refine_block(refine: torch.nn.Module, u: torch.Tensor) -> torch.Tensor:
    """What the decoder runs after each upsampling but the last: SiLU, then its refinement."""
    return refine(torch.nn.functional.silu(u))


def measure_refines(repeats: int, compiled: bool) -> list[dict]:
    """Forward + backward of each refinement block (channels-last, as fitted): eager, and
    ``torch.compile``d when ``compiled`` (its first call, the compilation, timed apart)."""
    from neurep.models.decoders import _Refine

    rows = []
    variants = {"eager": refine_block}
    if compiled:
        variants["compiled"] = torch.compile(refine_block, dynamic=False)
    for channels, height, width in REFINES:
        refine = _Refine(channels, 2).to(memory_format=torch.channels_last)
        u = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)
        u.requires_grad_(True)
        grad = torch.randn_like(u)
        row: dict = {"block": f"{channels}x{height}x{width}"}
        working = {}
        for name, block in variants.items():
            start = time.perf_counter()
            try:
                block(refine, u).backward(grad)
            except Exception as error:  # inductor's C++ build can fail on a machine
                row[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:200]}"
                continue
            row[f"{name}_first_call_s"] = round(time.perf_counter() - start, 2)
            working[name] = block
        times: dict[str, list[float]] = {name: [] for name in working}
        for _ in range(repeats):
            for name, block in working.items():
                start = time.perf_counter()
                block(refine, u).backward(grad)
                times[name].append((time.perf_counter() - start) * 1e3)
        for name, values in times.items():
            row[f"{name}_ms"] = round(sorted(values)[len(values) // 2], 3)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def large_gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one large float32 GEMM: about what these cores can do at best."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return round(2 * size**3 / sorted(times)[repeats // 2] / 1e9, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile of the refinements"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "decoder_convs.json")
    args = parser.parse_args(argv)
    with fit_settings():
        rows = measure(args.repeats)
        refines = measure_refines(args.repeats, args.compile)
        reference = large_gemm_gflops()
    channels_last = [row for row in rows if row["layout"] == "channels_last"]
    result = {
        "benchmark": "decoder_convs",
        "machine": machine_facts(),
        "rows": rows,
        "refines": refines,
        "refines_total_ms": round(sum(row["eager_ms"] for row in refines), 2),
        "large_gemm_gflops": reference,
        "fit_layout_total_ms": round(sum(row["conv_transpose_ms"] for row in channels_last), 2),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
