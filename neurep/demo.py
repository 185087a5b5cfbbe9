"""The main job on one image: fit, save, load, decode; print quality, size and time.

python -m neurep.demo                    # the bundled sample (neurep/samples/sample.png)
python -m neurep.demo photo.png --preset paper --out outputs/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

import neurep
from neurep.metrics import bits_per_pixel


def sample_path() -> Path:
    """The bundled demo image (synthetic, CC0; see scripts/make_sample.py)."""
    return Path(str(resources.files("neurep") / "samples" / "sample.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m neurep.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("image", nargs="?", type=Path, default=None, help="an image file")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--precision", default="int8", help="weight storage precision")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for results")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    image_path = args.image or sample_path()
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / (image_path.stem + ".nrep")

    started = time.perf_counter()
    datum = neurep.fit(
        image_path,
        preset=args.preset,
        steps=args.steps,
        precision=args.precision,
        progress=not args.quiet,
    )
    fit_seconds = time.perf_counter() - started
    nbytes = datum.save(target)

    started = time.perf_counter()
    loaded = neurep.load(target)
    decoded = loaded.decode()
    decode_seconds = time.perf_counter() - started

    original = np.asarray(Image.open(image_path))
    quality = loaded.adapter.quality(original, decoded)
    Image.fromarray(decoded).save(args.out / (image_path.stem + ".decoded.png"))
    report = {
        "image": str(image_path),
        "shape": list(original.shape),
        "preset": args.preset,
        "precision": args.precision,
        "nrep_file": str(target),
        "nrep_bytes": nbytes,
        "bpp": round(bits_per_pixel(nbytes, original.shape[0] * original.shape[1]), 4),
        "decoder_parameters": loaded.metadata["fit"]["decoder_parameters"],
        "psnr_db": round(quality["psnr"], 3),
        "ms_ssim": None if quality["ms_ssim"] is None else round(quality["ms_ssim"], 4),
        "fit_seconds": round(fit_seconds, 2),
        "load_and_decode_seconds": round(decode_seconds, 4),
        "round_trip_exact": bool(np.array_equal(decoded, datum.decode())),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
