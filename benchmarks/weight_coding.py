"""Entropy-coded weights (format 1.2) against raw int8 codes, on default-preset Kodak fits.

Each image is fitted once with the default preset (seed 0); the same fitted weights are then
stored three ways, side by side: raw min-max int8 codes (``weights_codec="raw"``, format 1.1's
layout), the same codes entropy-coded (``ans``), and entropy-coded with per-tensor steps chosen
by :func:`neurep.fitting.steps.coarsen_steps` at each PSNR budget in ``--budgets`` (what
``neurep.fit`` stores uses ``DEFAULT_BUDGET_DB``). Per image: bytes, PSNR, the chosen steps and
the time the choice took. The issue's target: at least 20% smaller than raw int8 within 0.1 dB.

    ./dev bench weight_coding                    # kodim01, about 3 min on 2 cores
    ./dev bench weight_coding --images 8         # kodim01-08

Writes results/weight_coding.json (after every image); progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_facts

import neurep
from neurep.fitting import pipeline, steps

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results"


def measure(path: Path, budgets: list[float], work: Path) -> dict:
    """Fit ``path`` once; its stores (raw, ans, ans + chosen steps per budget) measured."""
    row: dict = {"image": path.name}

    def stores(stored_with, budget_db=steps.DEFAULT_BUDGET_DB):
        base = stored_with(None)
        row["raw_int8"] = _stored(base, work / "raw.nrep", "raw")
        row["ans"] = _stored(base, work / "ans.nrep", "ans")
        for budget in budgets:
            start = time.perf_counter()
            chosen = steps.coarsen_steps(stored_with, budget)
            seconds = time.perf_counter() - start
            entry = _stored(chosen, work / "chosen.nrep", "ans")
            entry.update(budget_db=budget, step_scales=chosen.step_scales, choose_s=seconds)
            row.setdefault("ans_steps", []).append(entry)
        return base

    original = pipeline.coarsen_steps
    pipeline.coarsen_steps = stores
    try:
        start = time.perf_counter()
        neurep.fit(np.asarray(Image.open(path).convert("RGB")), progress=False, seed=0)
        row["fit_s"] = time.perf_counter() - start
    finally:
        pipeline.coarsen_steps = original
    raw = row["raw_int8"]
    for entry in [row["ans"], *row["ans_steps"]]:
        entry["saving_vs_raw"] = 1 - entry["bytes"] / raw["bytes"]
        entry["psnr_loss_db"] = raw["psnr"] - entry["psnr"]
    return row


def _stored(datum, path: Path, codec: str) -> dict:
    size = datum.save(path, weights_codec=codec)
    decoded = neurep.load(path).decode()
    assert np.array_equal(decoded, datum.decode()), "the file decodes as the datum"
    return {"bytes": size, "psnr": datum.metadata["quality"]["psnr"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1, help="kodim01..kodimNN")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.08, 0.095])
    parser.add_argument("--out", type=Path, default=RESULTS / "weight_coding.json")
    args = parser.parse_args(argv)
    result = {"benchmark": "weight_coding", "machine": machine_facts(), "rows": []}
    with tempfile.TemporaryDirectory() as work:
        for index in range(1, args.images + 1):
            path = DATA / f"kodim{index:02d}.png"
            print(f"fitting {path.name}", file=sys.stderr, flush=True)
            result["rows"].append(measure(path, args.budgets, Path(work)))
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
