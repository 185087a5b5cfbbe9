"""Rate-distortion benchmark: neurep vs Pillow JPEG/WebP/AVIF at the same real bytes, per image.

    python benchmarks/rate_distortion.py                         # Kodak, all codecs
    python benchmarks/rate_distortion.py --images 2 --steps 50 --name smoke
    python benchmarks/rate_distortion.py --codecs jpeg,webp,avif # classic half on its own
    python -m compressai.utils.plot -f benchmarks/results/rd_kodak/{neurep,jpeg,webp,avif}.json

For every image and target bpp (default 0.125, 0.25, 0.5, 1 and 2), neurep is fitted with
``neurep.fit(path, max_bytes=..., precision=...)``, saved, and the *real* ``.nrep`` file size is
measured; JPEG, WebP and AVIF are then encoded at the largest quality that fits those same bytes
(without neurep: the target bytes). AVIF is in the default list only where Pillow can write it
(``PIL.features.check("avif")``). Quality is PSNR on uint8 values and MS-SSIM (pytorch-msssim,
data range 255) of the decoded image.

Writes, in ``<out-dir>/rd_<name>/``:

- ``<codec>.json`` per codec (``neurep.json``, ``jpeg.json``, ``webp.json``, ``avif.json``): one
  result object in CompressAI's layout, ``{"name", "description", "results": {"target_bpp",
  "bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}, "per_image"}``; the
  ``results`` lists hold means over images, one entry per target. CompressAI's plot tool reads
  these files directly (``rd_<name>/*.json``).

and beside that folder:

- ``rd_<name>_summary.json``: BD-rate and BD-PSNR (``bjontegaard`` package, pchip
  interpolation, over the mean curves) of the test codec (neurep; without it, the first
  codec listed) against every other codec, and the PSNR difference test minus codec at every
  target. Negative BD-rate and positive BD-PSNR mean the test codec is ahead. Shape:
  ``{"test_codec", "method", "sign_convention", "target_bpp", "test_bpp", "against": {codec:
  {"bd_rate_percent", "bd_psnr_db", "points", "rate_overlap", "psnr_overlap",
  "psnr_diff_db", "codec_bpp", "ahead_at_target_bpp", "behind_at_target_bpp",
  "codec_more_bits_at_target_bpp"}}}``; a BD figure is null, with ``"bd_rate_reason"`` or
  ``"bd_psnr_reason"``, where a curve has fewer than 4 points, the curves do not overlap or
  PSNR does not rise with rate.
- ``rd_<name>.png``: the PSNR curves over the published Kodak anchors.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:  # python -m benchmarks.rate_distortion
    from benchmarks import classic_codecs as cc
except ImportError:  # python benchmarks/rate_distortion.py
    import classic_codecs as cc  # type: ignore[no-redef]

DEFAULT_BPP = (0.125, 0.25, 0.5, 1.0, 2.0)
DEFAULT_OUT = cc.REPO_ROOT / "benchmarks" / "results"
ALL_CODECS = ("neurep", *cc.CODECS)
BD_METHOD = "pchip"  # bjontegaard's piecewise cubic Hermite interpolation (as in JVET's CTC)
BD_MIN_POINTS = 4
SIGN_CONVENTION = (
    "bd_rate_percent < 0: {test} needs that many percent fewer bits than the codec for the same "
    "PSNR; bd_psnr_db > 0: {test} has that many dB more PSNR at the same rate; psnr_diff_db is "
    "{test} minus the codec at each target (mean over images)"
)


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
) -> dict[str, dict]:
    """Every codec on every image at every target -> {codec: CompressAI-layout result object}.

    Keys follow ``codecs`` (e.g. "neurep", "jpeg"); a target neurep cannot reach on some image
    is dropped for every codec and listed in neurep's ``unreachable_target_bpp``.
    """
    import neurep

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
    out = {}
    for c in codecs:
        if c == "neurep":
            desc = _neurep_description(fit_kwargs)
            out[c] = cc.summarise("neurep", desc, target_bpp, rows[c])
            out[c]["unreachable_target_bpp"] = sorted(unreachable)
        else:
            out[c] = cc.summarise(cc.CODECS[c].label, cc.describe(c), target_bpp, rows[c])
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


def _curve(results: dict) -> tuple[np.ndarray, np.ndarray]:
    """``results`` (CompressAI layout) -> (rate [bpp], PSNR [dB]), both (N,), sorted by rate.

    Points with a missing, non-finite or non-positive value are left out, and repeats of one
    point kept once (a codec at its lowest quality at two targets gives the same file twice).
    """
    pts = sorted(
        {
            (b, p)
            for b, p in zip(results["bpp"], results["psnr-rgb"], strict=True)
            if b is not None and p is not None and math.isfinite(b) and math.isfinite(p) and b > 0
        }
    )
    return np.array([b for b, _ in pts], float), np.array([p for _, p in pts], float)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the overlap of the ranges of ``a`` and ``b`` over that of their union (0-1)."""
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    inter = min(a.max(), b.max()) - max(a.min(), b.min())
    return max(inter, 0.0) / union if union > 0 else 0.0


def _bd_why_not(axis: str, anchor: np.ndarray, test: np.ndarray) -> str | None:
    """Why a BD figure integrating over ``axis`` ("rate" or "PSNR") cannot be computed, or None.

    anchor, test: (N,) values along that axis in the order of increasing rate.
    """
    for who, x in (("codec", anchor), ("test", test)):
        if len(x) < BD_MIN_POINTS:
            return f"{who} curve has {len(x)} points, BD needs >= {BD_MIN_POINTS}"
        if not np.all(np.diff(x) > 0):
            return f"{who} curve's {axis} does not rise strictly with rate"
    if _overlap(anchor, test) == 0:
        return (
            f"{axis} ranges do not overlap (codec {anchor.min():.4g}-{anchor.max():.4g}, "
            f"test {test.min():.4g}-{test.max():.4g})"
        )
    return None


def _bjontegaard():
    """The ``bjontegaard`` module (PyPI, >= 1.3); SystemExit saying how to install it."""
    try:
        import bjontegaard
    except ImportError as exc:
        raise SystemExit(
            "BD figures need the bjontegaard package: pip install -e .[bench]"
        ) from exc
    return bjontegaard


def bd_metrics(anchor: dict, test: dict, method: str = BD_METHOD) -> dict:
    """BD-rate [%] and BD-PSNR [dB] of ``test`` against ``anchor`` (bjontegaard package).

    anchor, test: CompressAI ``results`` dicts with equal-length lists ``bpp`` (bits per pixel)
    and ``psnr-rgb`` (dB), here the means over images per target. Returns ``bd_rate_percent``
    (negative: test needs fewer bits for the same PSNR) and ``bd_psnr_db`` (positive: test has
    more PSNR at the same rate), each None with ``bd_rate_reason`` / ``bd_psnr_reason`` saying
    why where it cannot be computed, and the overlaps (0-1) of the log-rate and PSNR ranges.
    """
    bd = _bjontegaard()
    rate_a, psnr_a = _curve(anchor)
    rate_t, psnr_t = _curve(test)
    log_a, log_t = np.log10(rate_a), np.log10(rate_t)
    out: dict = {
        "points": {"codec": len(rate_a), "test": len(rate_t)},
        "rate_overlap": _overlap(log_a, log_t) if len(log_a) and len(log_t) else 0.0,
        "psnr_overlap": _overlap(psnr_a, psnr_t) if len(psnr_a) and len(psnr_t) else 0.0,
    }
    figures = (
        ("bd_rate_percent", "bd_rate_reason", "PSNR", psnr_a, psnr_t, bd.bd_rate),
        ("bd_psnr_db", "bd_psnr_reason", "rate", rate_a, rate_t, bd.bd_psnr),
    )
    curves = (rate_a, psnr_a, rate_t, psnr_t)
    for key, why_key, axis, x_a, x_t, fn in figures:
        why = _bd_why_not(axis, x_a, x_t)
        out[key], out[why_key] = (None, why) if why else _bd_call(fn, curves, method)
    return out


def _bd_call(fn, curves: tuple, method: str) -> tuple[float | None, str | None]:
    """``fn(*curves, method)`` (bjontegaard.bd_rate or bd_psnr) -> (value, None) or
    (None, reason); partial overlap is allowed (the caller reports it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn(*curves, method, require_matching_points=False, min_overlap=0.0)
    except (ValueError, AssertionError) as exc:
        return None, f"bjontegaard.{fn.__name__} failed: {exc}"
    if not math.isfinite(value):
        return None, f"bjontegaard.{fn.__name__} gave {value}"
    return float(value), None


def per_target_difference(anchor: dict, test: dict) -> dict:
    """Mean PSNR of ``test`` minus ``anchor`` at each target (dB), and where it is ahead.

    anchor, test: CompressAI ``results`` dicts over the same ``target_bpp`` list (bpp).
    ``codec_more_bits_at_target_bpp`` lists the targets where the codec's mean bpp is above the
    test's (its lowest quality did not fit), so the comparison there favours the codec.
    """
    targets = test["target_bpp"]
    if list(anchor["target_bpp"]) != list(targets):
        raise ValueError(f"target lists differ: {anchor['target_bpp']} vs {targets}")
    diff = [t - a for t, a in zip(test["psnr-rgb"], anchor["psnr-rgb"], strict=True)]
    return {
        "psnr_diff_db": diff,
        "codec_bpp": list(anchor["bpp"]),
        "codec_more_bits_at_target_bpp": [
            b for b, a, t in zip(targets, anchor["bpp"], test["bpp"], strict=True) if a > t
        ],
        "ahead_at_target_bpp": [b for b, d in zip(targets, diff, strict=True) if d > 0],
        "behind_at_target_bpp": [b for b, d in zip(targets, diff, strict=True) if d <= 0],
    }


def bd_summary(results: dict[str, dict], test: str | None = None) -> dict:
    """{codec: result object} -> the ``rd_<name>_summary.json`` object: ``test`` (default
    neurep, else the first codec) against every other codec, BD figures and per-target PSNR
    differences."""
    test = test or ("neurep" if "neurep" in results else next(iter(results)))
    t = results[test]["results"]
    against = {}
    for codec, obj in results.items():
        if codec != test:
            against[codec] = {
                **bd_metrics(obj["results"], t),
                **per_target_difference(obj["results"], t),
            }
    return {
        "test_codec": test,
        "metric": "psnr-rgb",
        "method": (
            f"bjontegaard {_bjontegaard().__version__} bd_rate / bd_psnr, method={BD_METHOD!r}, "
            "log10 rate, over the overlap of the mean curves (results: means over images)"
        ),
        "sign_convention": SIGN_CONVENTION.format(test=test),
        "target_bpp": list(t["target_bpp"]),
        "test_bpp": list(t["bpp"]),
        "against": against,
    }


def write_results(folder: Path, results: dict[str, dict], summary: dict) -> list[Path]:
    """``<folder>/<codec>.json`` (one CompressAI result object each), and the summary beside
    the folder as ``<folder>_summary.json``, so that ``<folder>/*.json`` are all results."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for codec, obj in results.items():
        paths.append(folder / f"{codec}.json")
        paths[-1].write_text(json.dumps(obj, indent=1) + "\n")
    paths.append(folder.with_name(f"{folder.name}_summary.json"))
    paths[-1].write_text(json.dumps(summary, indent=1) + "\n")
    return paths


def write_plot(results: dict[str, dict], anchors: str | None, out_png: Path, title: str) -> Path:
    """PSNR curves of every codec over the published anchors (if the file exists)."""
    try:
        from benchmarks import plotting
    except ImportError:
        import plotting  # type: ignore[no-redef]
    anchors = anchors if anchors and Path(anchors).is_file() else None
    return plotting.plot_rd(list(results.values()), anchors, out_png, title)


def _bd_line(codec: str, entry: dict) -> str:
    def fmt(v, unit):
        return "n/a" if v is None else f"{v:+.2f}{unit}"

    diffs = ", ".join(f"{d:+.2f}" for d in entry["psnr_diff_db"])
    return (
        f"vs {codec}: BD-rate {fmt(entry['bd_rate_percent'], ' %')}, "
        f"BD-PSNR {fmt(entry['bd_psnr_db'], ' dB')}; PSNR diff per target [{diffs}] dB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(cc.DEFAULT_DATA), help="folder of .png images")
    ap.add_argument("--images", type=int, default=None, help="use only the first N images")
    ap.add_argument("--bpp", default=",".join(map(str, DEFAULT_BPP)), help="comma-separated")
    ap.add_argument(
        "--codecs",
        default=",".join(("neurep", *cc.default_codecs())),
        help="subset of neurep,jpeg,webp,avif (default: neurep and what this Pillow can write)",
    )
    ap.add_argument(
        "--precision", default=None, help="neurep weight precision (default: fit chooses int8-int4)"
    )
    ap.add_argument("--steps", type=int, default=None, help="neurep fitting steps (smoke runs)")
    ap.add_argument("--preset", default=None, help="neurep fitting preset (default: fit's)")
    ap.add_argument("--device", default=None, help="torch device for fitting, e.g. cuda")
    ap.add_argument("--name", default="kodak", help="results go to <out-dir>/rd_<name>/")
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
    _bjontegaard()  # fail before any work if the summary could not be written
    paths = cc.list_images(args.data, args.images)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="neurep-rd-") as tmp:
        workdir = Path(args.keep_nrep) if args.keep_nrep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = run(paths, codecs, target_bpp, fit_kwargs, workdir, log=log)
    folder = Path(args.out_dir) / f"rd_{args.name}"
    summary = bd_summary(results)
    written = write_results(folder, results, summary)
    title = f"{Path(args.data).name}: {len(paths)} images, bpp from real file bytes"
    written.append(write_plot(results, args.anchors, folder.with_name(f"{folder.name}.png"), title))
    for codec, entry in summary["against"].items():
        log(f"{summary['test_codec']} " + _bd_line(codec, entry))
    log("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
