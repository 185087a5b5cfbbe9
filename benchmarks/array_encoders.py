"""LPNet-S3K vs LPNet-Conv, encoder trained or frozen, on synthetic 1-D and 3-D arrays.

The Kodak ablation (encoder_ablation.py) uses a 96-number embedding, where the encoder hardly
matters. The 1-D signals here get 256 x 16 = 4096 numbers, so what the encoder passes on
counts; the volume gets 2^3 x 16 = 128, like Kodak. Signals, all float32, seeded:

- a chirp (65,536 samples, frequency rising from 5 to 805 cycles per length, plus a
  37-cycle tone);
- a Gaussian random walk (65,536 samples);
- a 64^3 volume, the sum of 40 Gaussian blobs.

    python benchmarks/array_encoders.py              # 120 steps each (the `fast` budget)
    python benchmarks/array_encoders.py --steps 10   # smoke run

Writes benchmarks/results/array_encoders.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import neurep
from neurep.fitting import get_preset

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ENCODERS = {"LPNet-S3K": "balanced", "LPNet-Conv": "balanced-conv"}


def signals(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 65536)
    chirp = np.sin(2 * np.pi * (5 + 400 * t) * t) + 0.3 * np.sin(2 * np.pi * 37 * t)
    walk = np.cumsum(rng.standard_normal(65536))
    z, y, x = np.mgrid[0:64, 0:64, 0:64] / 64
    blobs = rng.uniform([0, 0, 0, 0.03], [1, 1, 1, 0.15], (40, 4))
    volume = sum(
        np.exp(-((x - a) ** 2 + (y - b) ** 2 + (z - c) ** 2) / (2 * s**2)) for a, b, c, s in blobs
    )
    return {
        "chirp (65536)": chirp.astype(np.float32),
        "random walk (65536)": walk.astype(np.float32),
        "Gaussian blobs (64^3)": volume.astype(np.float32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "array_encoders.json")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "array_encoders",
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "neurep": neurep.__version__,
        },
        "steps": args.steps,
        "seed": args.seed,
        "rows": [],
    }
    for name, data in signals(args.seed).items():
        for encoder, preset in ENCODERS.items():
            for train_encoder in (True, False):
                started = time.perf_counter()
                datum = neurep.fit(
                    data,
                    preset=get_preset(preset).with_overrides(train_encoder=train_encoder),
                    steps=args.steps,
                    seed=args.seed,
                    progress=False,
                )
                row = {
                    "signal": name,
                    "encoder": encoder,
                    "train_encoder": train_encoder,
                    "psnr": datum.metadata["quality"]["psnr"],
                    "embedding_numbers": int(datum.embedding().size),
                    "fit_seconds": time.perf_counter() - started,
                }
                report["rows"].append(row)
                args.out.write_text(json.dumps(report, indent=2))
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
