"""Video: neurep LPNet-S3K and LPNet-Conv against libx264 and libx265 at the same bytes.

On a documented clip of ``../shared/data/video/cockatoo_yuv420.mp4`` (default: frames
100-159, 60 frames, resized to 320x180 when read), in one run:

* neurep at each byte budget (``--rates``, bits per pixel of the whole clip), with the
  ``balanced`` (S3K) and ``balanced-conv`` presets;
* libx264 and libx265 (preset medium, yuv420p, mp4 files) with the CRF searched (bisection,
  fractional CRF) so that each file is as close as it gets to neurep-S3K's file at that rate;
* for each: bytes, bpp, PSNR over the clip, per-frame PSNR min, MS-SSIM (per-frame mean),
  fit/encode time, decode frames/s, and for neurep the time to decode a 10-frame range from
  the middle of a freshly loaded file against 10 frames' share of a full decode;
* decode speed of the default decoder at 640x360 (a speed-only fit of one epoch).

Writes results/video.json, results/video_rd.png (RD curves) and results/video_strip.png
(original, neurep-S3K and x264 at the lowest rate).

    ./dev bench video                        # about 20 minutes on a 2-core CPU
    ./dev bench video --rates 0.02 --epochs 5 --no-speed   # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import neurep
from neurep.modalities.video import VideoAdapter

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "video" / "cockatoo_yuv420.mp4"
RESULTS = REPO / "benchmarks" / "results"
METHODS = {"neurep LPNet-S3K": "balanced", "neurep LPNet-Conv": "balanced-conv"}


def read_clip(frames: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The benchmark's frames as neurep reads them: (T, H, W, 3) uint8, and the fps."""
    adapter, signal = VideoAdapter.read(str(CLIP), frames=frames, size=size)  # (T, 3, H, W)
    return signal.permute(0, 2, 3, 1).contiguous().numpy(), adapter.configuration.fps


def quality(original: np.ndarray, decoded: np.ndarray) -> dict:
    """PSNR over the clip, per-frame PSNR min, mean per-frame MS-SSIM (neurep's measure)."""
    adapter, _ = VideoAdapter.read(original)
    measured = adapter.quality(original, decoded)
    return {
        "psnr": measured["psnr"],
        "psnr_min": measured["psnr_frames"]["min"],
        "ms_ssim": measured["ms_ssim"],
    }


# ---- classic codecs ---------------------------------------------------------------------------


def encode(frames: np.ndarray, codec: str, crf: float, fps: str) -> bytes:
    """An mp4 file of ``frames`` through PyAV: ``codec`` at ``crf``, preset medium, yuv420p."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": f"{crf:.3f}", "preset": "medium"}
        if codec == "libx265":
            stream.options["x265-params"] = "log-level=error"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def decode_mp4(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def codec_at_bytes(frames: np.ndarray, codec: str, target: int, fps: str) -> dict:
    """The CRF (bisection over 0..51, fractional) whose file is closest to ``target`` bytes."""
    low, high, best = 0.0, 51.0, None
    for _ in range(12):
        crf = (low + high) / 2
        size = len(encode(frames, codec, crf, fps))
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (crf, size)
        low, high = (crf, high) if size > target else (low, crf)  # higher CRF: fewer bytes
        if abs(size - target) <= 0.01 * target:
            break
    crf = best[0]
    started = time.perf_counter()
    data = encode(frames, codec, crf, fps)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode_mp4(data)
    decode_seconds = time.perf_counter() - started
    return {
        "crf": round(crf, 3),
        "bytes": len(data),
        "encode_seconds": encode_seconds,
        "decode_fps": len(frames) / decode_seconds,
        **quality(frames, decoded),
        "_decoded": decoded,
    }


# ---- neurep -----------------------------------------------------------------------------------


def neurep_at_rate(preset: str, bpp: float, args, workdir: Path) -> dict:
    """Fit the clip at ``bpp``, save, and time decodes of a fresh load (full, 10-frame range)."""
    started = time.perf_counter()
    datum = neurep.fit(
        str(CLIP),
        frames=args.frames,
        size=args.size,
        preset=preset,
        bpp=bpp,
        epochs=args.epochs,
        seed=args.seed,
        progress=False,
    )
    fit_seconds = time.perf_counter() - started
    path = workdir / f"{preset}_{bpp}.nrep"
    nbytes = datum.save(path)
    frames = datum.num_items
    full = _median_seconds(lambda: neurep.load(path).decode())
    middle = frames // 2
    ten = slice(max(0, middle - 5), min(frames, middle + 5))
    ranged = _median_seconds(lambda: neurep.load(path).decode(ten))
    fit = datum.metadata["fit"]
    return {
        "bytes": nbytes,
        "fit_seconds": fit_seconds,
        "decode_fps": frames / full,
        "range10_seconds": ranged,
        "range10_share_of_full_seconds": full * (ten.stop - ten.start) / frames,
        "decoder_parameters": fit["decoder_parameters"],
        "embedding_shape": datum.metadata["embedding"]["shape"],
        "precision": datum.metadata["weights"]["precision"],
        "training_psnr": fit.get("final_training_psnr"),
        "_decoded": neurep.load(path).decode(),
    }


def decode_speed_at(size: tuple[int, int], args, workdir: Path) -> dict:
    """Decode frames/s of the default (balanced) decoder for this clip length at ``size``."""
    datum = neurep.fit(
        str(CLIP), frames=args.frames, size=size, epochs=1, seed=args.seed, progress=False
    )
    path = workdir / "speed.nrep"
    datum.save(path)
    full = _median_seconds(lambda: neurep.load(path).decode())
    return {
        "size": list(size),
        "frames": datum.num_items,
        "decoder_parameters": datum.metadata["fit"]["decoder_parameters"],
        "decode_fps": datum.num_items / full,
        "note": "a one-epoch fit: decoding speed only, not quality",
    }


def _median_seconds(work, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---- plots ------------------------------------------------------------------------------------


def plot_rd(rows: list[dict], out: Path) -> Path:
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    for index, metric in enumerate(("psnr", "ms_ssim")):
        ax = fig.add_subplot(1, 2, index + 1)
        for method in dict.fromkeys(r["method"] for r in rows):
            points = sorted((r["bpp"], r[metric]) for r in rows if r["method"] == method)
            ax.plot(*zip(*points, strict=True), marker="o", label=method)
        ax.set(xlabel="bits per pixel (file bytes x 8 / (frames x H x W))", ylabel=metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("cockatoo clip: neurep against H.264 / H.265 at the same bytes")
    fig.savefig(out, dpi=110)
    return out


def plot_strip(original: np.ndarray, decoded: dict[str, np.ndarray], out: Path) -> Path:
    picks = np.linspace(0, len(original) - 1, 3).round().astype(int)
    rows = {"original": original, **decoded}
    fig = Figure(figsize=(3.2 * len(picks), 2.0 * len(rows)))
    FigureCanvasAgg(fig)
    for r, (name, frames) in enumerate(rows.items()):
        for c, index in enumerate(picks):
            ax = fig.add_subplot(len(rows), len(picks), r * len(picks) + c + 1)
            ax.imshow(frames[index])
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"frame {index}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def _pair(text: str, sep: str) -> tuple[int, int]:
    first, second = text.split(sep)
    return int(first), int(second)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", default="100:160", help="source frame range (100:160)")
    parser.add_argument("--size", default="320x180", help="frame size WxH (320x180)")
    parser.add_argument("--rates", default="0.02,0.04,0.08", help="bits per pixel targets")
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speed", action="store_true", help="skip the 640x360 speed fit")
    parser.add_argument("--name", default="video")
    args = parser.parse_args(argv)
    if not CLIP.is_file():
        print(f"needs {CLIP}", file=sys.stderr)
        return 2
    args.frames, args.size = _pair(args.frames, ":"), _pair(args.size, "x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    original, fps = read_clip(args.frames, args.size)
    pixels = original.shape[0] * original.shape[1] * original.shape[2]
    report = {
        "benchmark": "video",
        "clip": {
            "file": CLIP.name,
            "frames": list(args.frames),
            "size": list(args.size),
            "fps": fps,
            "shape": list(original.shape),
        },
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "neurep": neurep.__version__,
        },
        "rows": [],
    }
    out_json = RESULTS / f"{args.name}.json"
    strip: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for bpp in sorted(map(float, args.rates.split(","))):
            s3k_bytes = None
            for method, preset in METHODS.items():
                row = neurep_at_rate(preset, bpp, args, workdir)
                s3k_bytes = s3k_bytes or row["bytes"]
                _record(report, row, method, bpp, original, pixels, strip, out_json)
            for method, codec in (("libx264 medium", "libx264"), ("libx265 medium", "libx265")):
                row = codec_at_bytes(original, codec, s3k_bytes, fps)
                _record(report, row, method, bpp, original, pixels, strip, out_json)
        if not args.no_speed:
            report["decode_speed_640x360"] = decode_speed_at((640, 360), args, workdir)
            print(json.dumps(report["decode_speed_640x360"]), flush=True)
    report["summary"] = summary(report["rows"])
    out_json.write_text(json.dumps(report, indent=2))
    plot_rd(report["rows"], RESULTS / f"{args.name}_rd.png")
    plot_strip(original, strip, RESULTS / f"{args.name}_strip.png")
    print(json.dumps(report["summary"], indent=2))
    return 0


def _record(report, row, method, bpp, original, pixels, strip, out_json) -> None:
    decoded = row.pop("_decoded")
    if "psnr" not in row:
        row.update(quality(original, decoded))
    row.update(method=method, target_bpp=bpp, bpp=row["bytes"] * 8 / pixels)
    lowest = not any(r["target_bpp"] < bpp for r in report["rows"])
    if lowest and method in ("neurep LPNet-S3K", "libx264 medium"):
        strip[f"{method} {row['bytes']:,} B"] = decoded
    report["rows"].append(row)
    print(json.dumps(row), flush=True)
    out_json.write_text(json.dumps(report, indent=2))


def summary(rows: list[dict]) -> dict:
    """Per rate: each method's PSNR, and neurep-S3K's gap to x264, x265 and LPNet-Conv."""
    result = {}
    for bpp in sorted({r["target_bpp"] for r in rows}):
        at = {r["method"]: r for r in rows if r["target_bpp"] == bpp}
        s3k = at.get("neurep LPNet-S3K")
        entry = {m: {"bytes": r["bytes"], "psnr": r["psnr"]} for m, r in at.items()}
        if s3k:
            for method, key in (
                ("libx264 medium", "s3k_minus_x264_db"),
                ("libx265 medium", "s3k_minus_x265_db"),
                ("neurep LPNet-Conv", "s3k_minus_conv_db"),
            ):
                if method in at:
                    entry[key] = s3k["psnr"] - at[method]["psnr"]
        result[str(bpp)] = entry
    return result


if __name__ == "__main__":
    sys.exit(main())
