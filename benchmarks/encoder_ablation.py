"""Encoder ablation: does training the LPNet encoder help a single-image fit?

For each Kodak image, the same decoder recipe is fitted to five embeddings:

- LPNet-S3K, trained jointly with the decoder (the paper's method, neurep's default);
- LPNet-S3K, frozen at its random initialisation (computed once; only the decoder learns);
- LPNet-Conv, trained and frozen, likewise;
- an i.i.d. Gaussian code of the same shape, standardised like the encoders' outputs: no
  encoder at all, the reference for "any distinct code per position".

It also probes the untrained encoders: for each pyramid level, how much the projection's
output varies over positions (what reaches the embedding from the image) against its
position-independent part.

    python benchmarks/encoder_ablation.py                   # paper presets, kodim01-08
    python benchmarks/encoder_ablation.py --family default  # 1100-step presets
    python benchmarks/encoder_ablation.py --images 1 --steps 5  # smoke run
    python benchmarks/encoder_ablation.py --family default --images 4 --steps 2200 \
        --configuration "LPNet-S3K, frozen" --out benchmarks/results/frozen_2200.json

Writes benchmarks/results/encoder_ablation_<family>.json (after every fit) and a .png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import neurep
from neurep.fitting import fit_signal, get_preset, plan
from neurep.fitting.loop import pad_to, psnr_from_mse
from neurep.models import build
from neurep.models.encoders import standardise_embedding
from neurep.models.registry import ConfigurableModule, register

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results"

#: family -> (S3K preset, Conv preset)
FAMILIES = {"paper": ("paper", "paper-conv"), "default": ("balanced", "balanced-conv")}


@register("benchmark-gaussian-code")
class GaussianCode(ConfigurableModule):
    """No encoder: a fixed i.i.d. N(0, 1) code, (B, E, *S / stride), standardised per channel."""

    def __init__(self, *, channels: int, total_stride: int, seed: int = 0) -> None:
        super().__init__()
        self.channels, self.total_stride, self.seed = channels, total_stride, seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.channels, *(s // self.total_stride for s in x.shape[2:]))
        code = torch.randn(shape, generator=torch.Generator().manual_seed(self.seed))
        return standardise_embedding(code, 1.0).to(x.device)


def configurations(family: str) -> dict[str, tuple[str, bool, bool]]:
    """name -> (preset, train_encoder, gaussian_code)."""
    s3k, conv = FAMILIES[family]
    return {
        "LPNet-S3K, trained": (s3k, True, False),
        "LPNet-S3K, frozen": (s3k, False, False),
        "LPNet-Conv, trained": (conv, True, False),
        "LPNet-Conv, frozen": (conv, False, False),
        "Gaussian code": (s3k, False, True),
    }


def load_image(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    """uint8 (H, W, 3) and the signal (1, 3, H, W) in [0, 1]."""
    original = np.array(Image.open(path).convert("RGB"))  # writable, for torch.from_numpy
    return original, torch.from_numpy(original).permute(2, 0, 1)[None].float() / 255


def fit_once(signal, preset_name, train_encoder, gaussian, steps, seed) -> dict:
    preset = get_preset(preset_name).with_overrides(steps=steps, train_encoder=train_encoder)
    models = plan(preset.for_profile("image"), signal.shape[1], tuple(signal.shape[2:]))
    if gaussian:
        channels = models.encoder["configuration"]["widths"][-1]
        code = {"channels": channels, "total_stride": models.total_stride, "seed": seed}
        models.encoder.update(name="benchmark-gaussian-code", configuration=code)
    result = fit_signal(signal, models, steps=models.preset.steps, seed=seed, progress=False)
    with torch.no_grad():
        decoded = result.decoder(result.embedding)[..., : signal.shape[2], : signal.shape[3]]
    decoded = (decoded.clamp(0, 1) * 255).round() / 255  # as a uint8 image would decode
    return {
        "psnr": psnr_from_mse(torch.mean((decoded - signal) ** 2).item()),
        "fit_seconds": result.wall_time_s,
        "steps": result.steps,
    }


def probe_projections(signal: torch.Tensor, preset_name: str, seed: int) -> list[dict]:
    """Per pyramid level, the untrained projection's output: position-varying RMS vs mean RMS.

    Output of projection j is (1, W_j, *s_j); "varying" is the RMS over channels of the
    standard deviation over positions, "constant" the RMS over channels of the mean.
    """
    preset = get_preset(preset_name).for_profile("image")
    models = plan(preset, signal.shape[1], tuple(signal.shape[2:]))
    torch.manual_seed(seed)
    encoder = build(models.encoder)
    outputs: dict[int, torch.Tensor] = {}
    for level, projection in enumerate(encoder.projections):
        projection.register_forward_hook(lambda _m, _i, out, j=level: outputs.__setitem__(j, out))
    with torch.no_grad():
        encoder(pad_to(signal, models.padded_shape))
    rows = []
    for level, out in sorted(outputs.items()):
        flat = out[0].flatten(1)  # (W_j, positions)
        rows.append(
            {
                "level": level,
                "varying_rms": flat.std(dim=1).square().mean().sqrt().item(),
                "constant_rms": flat.mean(dim=1).square().mean().sqrt().item(),
            }
        )
    return rows


def summarise(rows: list[dict], names: list[str]) -> dict:
    summary: dict = {}
    for name in names:
        mine = [r for r in rows if r["configuration"] == name]
        if mine:
            summary[name] = {
                "images": len(mine),
                "mean_psnr": statistics.fmean(r["psnr"] for r in mine),
                "median_fit_seconds": statistics.median(r["fit_seconds"] for r in mine),
            }
    by_image: dict[str, dict[str, float]] = {}
    for r in rows:
        by_image.setdefault(r["image"], {})[r["configuration"]] = r["psnr"]
    for a, b in [
        ("LPNet-S3K, trained", "LPNet-Conv, trained"),
        ("LPNet-S3K, frozen", "LPNet-S3K, trained"),
        ("LPNet-Conv, frozen", "LPNet-Conv, trained"),
        ("Gaussian code", "LPNet-Conv, trained"),
    ]:
        diffs = [v[a] - v[b] for v in by_image.values() if a in v and b in v]
        if diffs:
            summary[f"{a} minus {b}"] = {
                "images": len(diffs),
                "mean_db": statistics.fmean(diffs),
                "wins": sum(d > 0 for d in diffs),
            }
    return summary


def plot(rows: list[dict], names: list[str], out: Path, title: str) -> None:
    figure = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    images = sorted({r["image"] for r in rows})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = {r["image"]: r["psnr"] for r in rows if r["configuration"] == name}
        xs = [k + (i - (len(names) - 1) / 2) * width for k, im in enumerate(images) if im in values]
        ax.bar(xs, [values[im] for im in images if im in values], width, label=name)
    ax.set_xticks(range(len(images)), [im.removesuffix(".png") for im in images], rotation=45)
    low = min(r["psnr"] for r in rows)
    ax.set_ylim(low - 1, max(r["psnr"] for r in rows) + 0.5)
    ax.set_ylabel("PSNR [dB]")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="paper")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="override the presets' steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--configuration",
        action="append",
        default=None,
        help="run only this one (repeatable; default: all five)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"encoder_ablation_{args.family}.json"
    images = sorted(args.data.glob("kodim*.png"))[: args.images]
    if not images:
        print(f"no kodim*.png under {args.data}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    chosen = configurations(args.family)
    if args.configuration:
        wanted = args.configuration
        unknown = [name for name in wanted if name not in chosen]
        if unknown:
            print(f"unknown configurations {unknown}; choose from {list(chosen)}", file=sys.stderr)
            return 2
        chosen = {name: chosen[name] for name in wanted}
    names = list(chosen)
    report = {
        "benchmark": "encoder_ablation",
        "family": args.family,
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "neurep": neurep.__version__,
        },
        "steps_override": args.steps,
        "seed": args.seed,
        "probe": {},
        "rows": [],
        "summary": {},
    }
    s3k_preset, conv_preset = FAMILIES[args.family]
    for image in images:
        _, signal = load_image(image)
        report["probe"][image.name] = {
            "LPNet-S3K": probe_projections(signal, s3k_preset, args.seed),
            "LPNet-Conv": probe_projections(signal, conv_preset, args.seed),
        }
        for name, (preset, train_encoder, gaussian) in chosen.items():
            row = {
                "image": image.name,
                "configuration": name,
                **fit_once(signal, preset, train_encoder, gaussian, args.steps, args.seed),
            }
            report["rows"].append(row)
            report["summary"] = summarise(report["rows"], names)
            out.write_text(json.dumps(report, indent=2))
            print(json.dumps(row), flush=True)
    print(json.dumps(report["summary"], indent=2))
    plot(report["rows"], names, out.with_suffix(".png"), f"Encoder ablation ({args.family})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
