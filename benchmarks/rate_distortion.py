"""Rate-distortion benchmark: neurep vs Pillow JPEG/WebP at the same real bytes, per image.

    python benchmarks/rate_distortion.py                         # Kodak 01-08, all codecs
    python benchmarks/rate_distortion.py --images 2 --steps 50 --name smoke
    python benchmarks/rate_distortion.py --codecs jpeg,webp      # classic half on its own

For every image and target bpp, neurep is fitted with ``neurep.fit(path, max_bytes=...,
precision=...)``, saved, and the *real* ``.nrep`` file size is measured; JPEG and WebP are then
encoded at the largest quality that fits those same bytes (without neurep: the target bytes).
Quality is PSNR on uint8 values and MS-SSIM (pytorch-msssim, data range 255) of the decoded
image. Writes ``<out-dir>/rd_<name>.json`` (a list of CompressAI-layout result objects, one per
codec, with ``per_image`` details) and ``<out-dir>/rd_<name>.png`` (our curves over the
published Kodak anchors).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import neurep

try:  # python -m benchmarks.rate_distortion
    from benchmarks import classic_codecs as cc
    from benchmarks import plotting
except ImportError:  # python benchmarks/rate_distortion.py
    import classic_codecs as cc  # type: ignore[no-redef]
    import plotting  # type: ignore[no-redef]

DEFAULT_BPP = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
DEFAULT_OUT = cc.REPO_ROOT / "benchmarks" / "results"
ALL_CODECS = ("neurep", *cc.CODECS)


def _neurep_fit(kwargs: dict):
    """``neurep.fit`` after checking it takes ``kwargs``; SystemExit with the fix otherwise."""
    try:
        import neurep

        fit = neurep.fit
    except (ImportError, AttributeError) as exc:
        raise SystemExit(
            f"neurep.fit is not available ({exc}); run with --codecs jpeg,webp"
        ) from exc
    params = inspect.signature(fit).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        missing = [k for k in kwargs if k not in params]
        if missing:
            raise SystemExit(
                f"neurep.fit does not accept {missing} yet; run with --codecs jpeg,webp"
            )
    return fit


def measure_neurep(
    path: Path, image: np.ndarray, target_bytes: int, fit_kwargs: dict, workdir: Path
) -> dict:
    """Fit one image at ``target_bytes``, save, reload, decode -> per-point metrics.

    image: (H, W, 3) uint8, the same pixels as ``path``. ``bpp`` comes from the saved file.
    """
    import neurep

    fit = _neurep_fit({"max_bytes": target_bytes, **fit_kwargs})
    t0 = time.perf_counter()
    datum = fit(str(path), max_bytes=target_bytes, **fit_kwargs)
    encode_s = time.perf_counter() - t0
    out = workdir / f"{path.stem}_{target_bytes}.nrep"
    datum.save(out)
    nbytes = out.stat().st_size
    t0 = time.perf_counter()
    decoded = np.asarray(neurep.load(out).decode())
    decode_s = time.perf_counter() - t0
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise RuntimeError(f"{path.name}: decoded {decoded.dtype} {decoded.shape}, not the input's")
    return {
        "bpp": nbytes * 8 / (image.shape[0] * image.shape[1]),
        "psnr-rgb": cc.psnr_uint8(image, decoded),
        "ms-ssim-rgb": cc.ms_ssim_uint8(image, decoded),
        "encoding_time": encode_s,
        "decoding_time": decode_s,
        "quality": None,
        "bytes": nbytes,
        "target_bytes": int(target_bytes),
    }


def run(
    paths: Sequence[Path],
    codecs: Sequence[str],
    target_bpp: Sequence[float],
    fit_kwargs: dict,
    workdir: Path,
    log=print,
) -> list[dict]:
    """Every codec on every image at every target -> one CompressAI-layout dict per codec."""
    rows: dict[str, dict[str, list]] = {c: {} for c in codecs}
    unreachable: set[float] = set()
    for path in paths:
        image = cc.load_rgb(path)
        pixels = image.shape[0] * image.shape[1]
        for c in codecs:
            rows[c][path.stem] = []
        for bpp in target_bpp:
            target = int(bpp * pixels / 8)
            if "neurep" in codecs:
                try:
                    point = measure_neurep(path, image, target, fit_kwargs, workdir)
                except neurep.InputError as error:  # budget below the smallest datum
                    log(f"{path.stem} {bpp} bpp: neurep cannot reach it: {error}")
                    unreachable.add(bpp)
                    for c in codecs:
                        rows[c][path.stem].append(None)
                    continue
                rows["neurep"][path.stem].append(point)
                target = point["bytes"]  # the classic codecs get neurep's real bytes
            for c in codecs:
                if c != "neurep":
                    rows[c][path.stem].append(cc.measure(c, image, target))
            log(_progress(path.stem, bpp, codecs, rows))
    if unreachable:  # keep only the targets every image reached, for every codec alike
        keep = [i for i, b in enumerate(target_bpp) if b not in unreachable]
        target_bpp = [target_bpp[i] for i in keep]
        for c in codecs:
            for stem in rows[c]:
                rows[c][stem] = [rows[c][stem][i] for i in keep]
    out = []
    for c in codecs:
        if c == "neurep":
            desc = _neurep_description(fit_kwargs)
            out.append(cc.summarise("neurep", desc, target_bpp, rows[c]))
            out[-1]["unreachable_target_bpp"] = sorted(unreachable)
        else:
            out.append(cc.summarise(cc.CODECS[c].label, cc.describe(c), target_bpp, rows[c]))
    return out


def _progress(stem: str, bpp: float, codecs: Sequence[str], rows: dict) -> str:
    parts = [
        f"{c} {rows[c][stem][-1]['bpp']:.3f} bpp {rows[c][stem][-1]['psnr-rgb']:.2f} dB"
        for c in codecs
    ]
    return f"{stem} @ {bpp:g} bpp: " + "; ".join(parts)


def _neurep_description(fit_kwargs: dict) -> str:
    import neurep

    settings = ", ".join(f"{k}={v}" for k, v in sorted(fit_kwargs.items()))
    return (
        f"neurep {neurep.__version__}, neurep.fit(path, max_bytes=target, {settings}); "
        "bpp from the saved .nrep file's real bytes"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(cc.DEFAULT_DATA), help="folder of .png images")
    ap.add_argument("--images", type=int, default=None, help="use only the first N images")
    ap.add_argument("--bpp", default=",".join(map(str, DEFAULT_BPP)), help="comma-separated")
    ap.add_argument("--codecs", default=",".join(ALL_CODECS), help="subset of neurep,jpeg,webp")
    ap.add_argument(
        "--precision", default=None, help="neurep weight precision (default: fit chooses int8-int4)"
    )
    ap.add_argument("--steps", type=int, default=None, help="neurep fitting steps (smoke runs)")
    ap.add_argument("--preset", default=None, help="neurep fitting preset (default: fit's)")
    ap.add_argument("--device", default=None, help="torch device for fitting, e.g. cuda")
    ap.add_argument("--name", default="kodak", help="results are rd_<name>.json / .png")
    ap.add_argument("--out-dir", default=str(DEFAULT_OUT))
    ap.add_argument("--anchors", default=str(cc.DEFAULT_ANCHORS), help="published curves JSON")
    ap.add_argument("--keep-nrep", default=None, help="folder to keep the .nrep files in")
    args = ap.parse_args(argv)
    codecs = cc.parse_codecs(args.codecs, ALL_CODECS)
    target_bpp = cc.parse_floats(args.bpp)
    fit_kwargs: dict = {}
    for key in ("precision", "steps", "preset", "device"):
        if getattr(args, key) is not None:
            fit_kwargs[key] = getattr(args, key)
    if "neurep" in codecs:
        _neurep_fit({"max_bytes": 0, **fit_kwargs})  # fail before any work if unsupported
    paths = cc.list_images(args.data, args.images)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="neurep-rd-") as tmp:
        workdir = Path(args.keep_nrep) if args.keep_nrep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = run(paths, codecs, target_bpp, fit_kwargs, workdir, log=log)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"rd_{args.name}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    anchors = args.anchors if Path(args.anchors).is_file() else None
    title = f"{Path(args.data).name}: {len(paths)} images, bpp from real file bytes"
    png = plotting.plot_rd(results, anchors, out_dir / f"rd_{args.name}.png", title)
    log(f"wrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
