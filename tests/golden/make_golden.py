"""Regenerate the golden ``.nrep`` files of tests/golden/files (run by hand, not by pytest).

    .venv/bin/python tests/golden/make_golden.py          # writes the cases not yet recorded
    .venv/bin/python tests/golden/make_golden.py CASE ...  # rewrites those cases too

Each case fits a tiny, seeded input for a few steps, saves it, and records what decoding the
saved file gives (``<case>.decoded.npy`` and its sha256 in ``expected.json``). The committed
files are then loaded by test_golden.py forever: a change that breaks reading or decoding
files written earlier fails there. Regenerate only when such a break is intended (a new
major format version), and say so in the commit message.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Callable

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
FILES = HERE / "files"
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z: reproducible `created`


def _rgb_image() -> np.ndarray:
    """A smooth 24 x 40 RGB uint8 image (gradients and a disc)."""
    y, x = np.mgrid[0:24, 0:40]
    disc = ((y - 12) ** 2 + (x - 25) ** 2 < 60).astype(np.float64)
    channels = [x / 39.0, y / 23.0, 0.3 + 0.6 * disc]
    return (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)


def _gray_image_uint16() -> np.ndarray:
    """A 20 x 28 uint16 grayscale ramp with a bright square."""
    image = np.linspace(0, 40_000, 20 * 28).reshape(20, 28)
    image[5:12, 8:16] = 65_000
    return image.astype(np.uint16)


def _signal_1d() -> np.ndarray:
    """A float32 1-D signal of 96 samples in [-2, 3]."""
    t = np.linspace(0, 6, 96)
    return (0.5 + 2.5 * np.sin(t) * np.exp(-t / 6)).astype(np.float32)


def _voxel_ball() -> np.ndarray:
    """A 12 x 10 x 14 bool grid: an off-centre ball with a box cut out of it."""
    z, y, x = np.mgrid[0:12, 0:10, 0:14]
    ball = (z - 6) ** 2 + (y - 5) ** 2 + (x - 6) ** 2 <= 16
    ball[7:, 5:, 6:] = False
    return ball


# case name -> (input factory, fit keyword arguments)
CASES: dict[str, tuple[Callable[[], np.ndarray], dict]] = {
    "image_rgb_uint8": (_rgb_image, {"precision": "float16"}),
    "image_gray_uint16_int8": (
        _gray_image_uint16,
        {"precision": "int8", "embedding_precision": "int6"},
    ),
    "array_1d_float32": (_signal_1d, {"modality": "array", "precision": "float32"}),
    # format 1.1: compact quantisation records, packed integer weights, deflated zarr.json
    "image_rgb_uint8_v1_1": (_rgb_image, {}),
    "image_gray_uint16_int5_v1_1": (_gray_image_uint16, {"precision": "int5"}),
    "array_1d_float32_v1_1": (_signal_1d, {"modality": "array", "precision": "float16"}),
    # 3-D shapes: the shape configuration (grid, world frame) and an occupancy decode
    "voxels_ball_v1_1": (_voxel_ball, {"steps": 60}),
    # format 1.2: entropy-coded (ans) weight codes, 8-bit and bit-packed
    "image_rgb_uint8_v1_2": (_rgb_image, {}),
    "image_gray_uint16_int5_v1_2": (_gray_image_uint16, {"precision": "int5"}),
    # format 1.3: log-quadratic models, kernel-sum prediction, float16 quantisation parameters
    "image_rgb_uint8_v1_3": (_rgb_image, {}),
    "image_gray_uint16_int5_v1_3": (_gray_image_uint16, {"precision": "int5"}),
}


def _decoded_codes(path: pathlib.Path) -> bytes | None:
    """The raw affine codes of an entropy-coded file (None for other files)."""
    import neurep
    from neurep.formats._entropy import decode_codes, has_codec
    from neurep.models.layout import state_layout

    datum = neurep.load(path)
    qinfo = datum.metadata["weights"]["quantization"]
    if not has_codec(qinfo):
        return None
    described = state_layout(datum.metadata["decoder"])
    stored, _ = decode_codes(datum._reader.read_tensors(), qinfo, described, str(path))
    return stored["codes"].numpy().tobytes()


def main() -> int:
    import neurep

    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    torch.set_num_threads(1)
    FILES.mkdir(exist_ok=True)
    known = FILES / "expected.json"
    expected = json.loads(known.read_text()) if known.exists() else {}
    regenerate = set(sys.argv[1:])  # case names to write again; new cases are always written
    for case, (make_input, options) in CASES.items():
        if case in expected and case not in regenerate:
            continue  # files users already have: never rewritten by accident
        options = {"steps": 30, **options}
        datum = neurep.fit(
            make_input(), preset="fast", seed=0, progress=False, device="cpu", **options
        )
        path = FILES / f"{case}.nrep"
        size = datum.save(path)
        decoded = np.asarray(neurep.load(path).decode())
        np.save(FILES / f"{case}.decoded.npy", decoded, allow_pickle=False)
        expected[case] = {
            "format_version": neurep.open(path).metadata["format_version"],
            "file_bytes": size,
            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "decoded_shape": list(decoded.shape),
            "decoded_dtype": decoded.dtype.name,
            "decoded_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
        }
        codes = _decoded_codes(path)
        if codes is not None:
            expected[case]["codes_sha256"] = hashlib.sha256(codes).hexdigest()
        print(f"{case}: {size} bytes, decoded {decoded.shape} {decoded.dtype}")
    (FILES / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    raise SystemExit(main())
