"""Pillow JPEG, WebP and AVIF at matched bytes: the classic-codec half of the rate-distortion
benchmark.

    python benchmarks/classic_codecs.py --bpp 0.1,0.25,0.5,1,2,4 > results.json
    python benchmarks/classic_codecs.py --codecs jpeg,avif --images 2

AVIF (quality 0-100, Pillow's default speed 6 and 4:2:0) needs a Pillow built with it
(``PIL.features.check("avif")``, Pillow >= 11.2); by default it is used only where it is there,
and asking for it explicitly elsewhere stops with a message saying so.

For each image and target size, :func:`encode_at_bytes` finds by binary search the largest
quality setting whose output fits the target bytes (real encoded file bytes, headers included),
decodes it and times both. The printed JSON is one object per codec in CompressAI's result
layout (``name``, ``description``, ``results`` with ``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``,
``encoding_time``, ``decoding_time``: means over images, one entry per target) plus
``target_bpp`` and the per-image measurements.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import PIL
from PIL import Image, features

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "kodak"
DEFAULT_ANCHORS = REPO_ROOT.parent / "shared" / "anchors" / "kodak_rd_reference.json"
DEFAULT_BPP = (0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 4.0)


class Codec(NamedTuple):
    """A Pillow still-image codec and its quality range (both ends usable)."""

    pil_format: str
    label: str
    q_min: int
    q_max: int
    feature: str  # PIL.features name, for the library version


CODECS = {
    "jpeg": Codec("JPEG", "JPEG (Pillow)", 1, 100, "jpg"),
    "webp": Codec("WEBP", "WebP (Pillow)", 0, 100, "webp"),
    "avif": Codec("AVIF", "AVIF (Pillow)", 0, 100, "avif"),  # Pillow >= 11.2 built with libavif
}


def available(codec: str) -> bool:
    """Whether the installed Pillow can write ``codec`` (an older Pillow not knowing the feature
    name counts as not available)."""
    with warnings.catch_warnings():  # "Unknown feature 'avif'" on Pillow < 11.2
        warnings.simplefilter("ignore")
        return bool(features.check(CODECS[codec].feature))


def default_codecs() -> list[str]:
    """The names in :data:`CODECS` this Pillow can write, in table order."""
    return [c for c in CODECS if available(c)]


class Encoded(NamedTuple):
    """Result of :func:`encode_at_bytes`; unpacks as a 5-tuple."""

    decoded: np.ndarray  # (H, W, 3) uint8
    nbytes: int  # real encoded bytes; > target only if even the lowest quality did not fit
    quality: int
    encode_s: float
    decode_s: float


def _encode(image: Image.Image, codec: Codec, quality: int) -> tuple[bytes, float]:
    """Encode with Pillow defaults except ``quality``; return (bytes, seconds)."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    image.save(buf, format=codec.pil_format, quality=quality)
    return buf.getvalue(), time.perf_counter() - t0


def _decode(data: bytes) -> tuple[np.ndarray, float]:
    """bytes -> ((H, W, 3) uint8, seconds)."""
    t0 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB"))
    return out, time.perf_counter() - t0


def encode_at_bytes(image_uint8: np.ndarray, codec: str, target_bytes: int) -> Encoded:
    """Encode ``image_uint8`` (H, W, 3) uint8 at the largest quality that fits ``target_bytes``.

    Binary search over the codec's quality range (size is treated as non-decreasing in
    quality; where it is not, the answer still fits, it may just not be the largest). If even
    the lowest quality is larger than the target, that encoding is returned (``nbytes`` then
    exceeds ``target_bytes``; callers must report the real size).
    """
    spec = CODECS[codec]
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    pil = Image.fromarray(image, mode="RGB")
    cache: dict[int, tuple[bytes, float]] = {}

    def size(q: int) -> int:
        if q not in cache:
            cache[q] = _encode(pil, spec, q)
        return len(cache[q][0])

    lo, hi = spec.q_min, spec.q_max
    if size(lo) > target_bytes:
        best = lo
    elif size(hi) <= target_bytes:
        best = hi
    else:  # invariant: size(lo) fits, size(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if size(mid) <= target_bytes else (lo, mid)
        best = lo
    data, encode_s = _encode(pil, spec, best)  # timed again, on its own, for a clean figure
    decoded, decode_s = _decode(data)
    return Encoded(decoded, len(data), best, encode_s, decode_s)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (peak 255); inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ms_ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data_range 255) of two (H, W, 3) uint8 images."""
    import torch  # here, so that importing this module stays light
    from pytorch_msssim import ms_ssim

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(ms_ssim(nchw(a), nchw(b), data_range=255.0, size_average=True))


def load_rgb(path: str | Path) -> np.ndarray:
    """Image file -> (H, W, 3) uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def list_images(data: str | Path, limit: int | None = None) -> list[Path]:
    """The ``*.png`` files of a folder, sorted by name, at most ``limit`` of them."""
    paths = sorted(Path(data).glob("*.png"))
    if not paths:
        raise SystemExit(f"no .png images in {data}")
    return paths[:limit] if limit else paths


def measure(codec: str, image: np.ndarray, target_bytes: int) -> dict:
    """One codec on one image at one size -> the per-point metrics (CompressAI names)."""
    enc = encode_at_bytes(image, codec, target_bytes)
    pixels = image.shape[0] * image.shape[1]
    return {
        "bpp": enc.nbytes * 8 / pixels,
        "psnr-rgb": psnr_uint8(image, enc.decoded),
        "ms-ssim-rgb": ms_ssim_uint8(image, enc.decoded),
        "encoding_time": enc.encode_s,
        "decoding_time": enc.decode_s,
        "quality": enc.quality,
        "bytes": enc.nbytes,
        "target_bytes": int(target_bytes),
    }


METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def summarise(name: str, description: str, target_bpp: Sequence[float], rows: dict) -> dict:
    """rows[image][i] = per-point dict for target i -> one CompressAI-layout result object.

    ``results`` holds means over images per target; ``per_image`` keeps every measurement.
    """
    images = sorted(rows)
    results: dict[str, list] = {"target_bpp": [float(b) for b in target_bpp]}
    for key in METRICS:
        results[key] = [
            float(np.mean([rows[im][i][key] for im in images])) for i in range(len(target_bpp))
        ]
    per_image = {
        im: {k: [p[k] for p in rows[im]] for k in (*METRICS, "quality", "bytes", "target_bytes")}
        for im in images
    }
    return {"name": name, "description": description, "results": results, "per_image": per_image}


def describe(codec: str) -> str:
    """One line naming the library versions and how the quality was chosen."""
    spec = CODECS[codec]
    lib = f"{spec.feature} {features.version(spec.feature) or 'unknown'}"
    if codec == "avif":
        lib += _avif_codecs()
    return (
        f"Pillow {PIL.__version__} ({lib}), default settings, quality chosen per "
        "image as the largest whose file fits the target bytes; bpp from real encoded bytes"
    )


def _avif_codecs() -> str:
    """``"; <libavif's AV1 encoder/decoder versions>"`` or "" where Pillow does not say."""
    try:
        from PIL import _avif

        return f"; {_avif.codec_versions()}"
    except (ImportError, AttributeError):
        return ""


def run(paths: Sequence[Path], codecs: Sequence[str], target_bpp: Sequence[float]) -> list[dict]:
    """All codecs on all images at every target bpp -> one CompressAI-layout dict per codec."""
    rows: dict[str, dict[str, list]] = {c: {} for c in codecs}
    for path in paths:
        image = load_rgb(path)
        pixels = image.shape[0] * image.shape[1]
        for c in codecs:
            rows[c][path.stem] = [measure(c, image, int(b * pixels / 8)) for b in target_bpp]
    return [summarise(CODECS[c].label, describe(c), target_bpp, rows[c]) for c in codecs]


def parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_codecs(text: str, allowed: Sequence[str]) -> list[str]:
    """Comma-separated names -> list; SystemExit on an unknown name or a Pillow codec that this
    Pillow cannot write (AVIF before Pillow 11.2 or without libavif)."""
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"unknown codec(s) {bad}; choose from {', '.join(allowed)}")
    missing = [n for n in names if n in CODECS and not available(n)]
    if missing:
        raise SystemExit(
            f"Pillow {PIL.__version__} cannot write {missing} (PIL.features.check"
            f"({CODECS[missing[0]].feature!r}) is False); AVIF needs Pillow >= 11.2 built with "
            "libavif. Leave it out of --codecs."
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of .png images")
    ap.add_argument("--images", type=int, default=None, help="use only the first N images")
    ap.add_argument("--bpp", default=",".join(map(str, DEFAULT_BPP)), help="comma-separated")
    ap.add_argument(
        "--codecs",
        default=",".join(default_codecs()),
        help="comma-separated: jpeg, webp, avif (default: those this Pillow can write)",
    )
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--png", default=None, help="also plot the curves over the anchors here")
    ap.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="published curves JSON")
    args = ap.parse_args(argv)
    paths = list_images(args.data, args.images)
    out = run(paths, parse_codecs(args.codecs, tuple(CODECS)), parse_floats(args.bpp))
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.png:
        try:
            from benchmarks import plotting
        except ImportError:
            import plotting  # type: ignore[no-redef]
        title = f"{Path(args.data).name}: {len(paths)} images, Pillow codecs at target bytes"
        plotting.plot_rd(out, args.anchors, args.png, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
