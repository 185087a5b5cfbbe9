"""Atheris fuzz target for the ``.nrep`` reader (issue #5).

Property: for ANY input bytes, ``open_nrep`` / ``read_array`` / ``read_tensors`` either work or
raise :class:`neurep.FormatError` (or a subclass); any other exception, a hang (``-timeout``)
or an oversized allocation (``-malloc_limit_mb`` / ``-rss_limit_mb``) is a crash.

Run (one core; seeds are written to the corpus directory first if it is empty)::

    .venv/bin/python -m pip install 'neurep[fuzz]'          # atheris
    .venv/bin/python fuzz/fuzz_nrep.py fuzz/corpus -max_total_time=600 \\
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512

A structure-aware custom mutator keeps most inputs valid ZIPs (CRCs recomputed, each member
kept deflated or stored as it was, and the weights checksum in the metadata updated half of the
time) so mutations reach the metadata, zarr and safetensors validators instead of dying at the
CRC check. ``--plain`` uses only libFuzzer's byte-level mutations. The seeds cover formats
1.1 to 1.3: deflated ``zarr.json`` members, compact (``qinfo`` version 2) weights and
embedding records, and the 1.1, 1.2 and 1.3 golden files of ``tests/golden/files`` when run
from a checkout (entropy-coded weights, 1.2's and 1.3's, are decoded by the target,
``_decode_weight_codes``).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import random
import shutil
import sys
import warnings
import zipfile

import atheris

with atheris.instrument_imports(include=["neurep"]):
    import numpy as np
    import torch

    from neurep.errors import FormatError
    from neurep.formats import ReadLimits, open_nrep, write_nrep
    from neurep.formats._compact import compact_array, compact_tensors
    from neurep.formats._entropy import decode_codes, encode_codes, has_codec
    from neurep.formats.quantize import quantize_array, quantize_tensors
    from neurep.models.layout import state_layout

# Small enough that a legitimately large (but allowed) declaration does not slow fuzzing;
# the property checked is the same for any limits.
LIMITS = ReadLimits(max_decoded_bytes=64 << 20, max_elements=1 << 24, max_file_bytes=64 << 20)
WEIGHTS = "weights.safetensors"
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "golden")


def test_one_input(data: bytes) -> None:
    """Open and read everything; only FormatError may escape (libFuzzer reports the rest)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open_nrep(data, limits=LIMITS) as reader:
                for name in reader.array_names:
                    full = reader.read_array(name)
                    if full.ndim:
                        reader.read_array(name, (slice(None, None, -2), Ellipsis))
                    if full.ndim and full.shape[0]:  # -1 on an empty axis is an IndexError
                        reader.read_array(name, -1)
                _decode_weight_codes(reader.metadata, reader.read_tensors())
        except FormatError:
            pass


def _decode_weight_codes(metadata: dict, tensors: dict) -> None:
    """Formats 1.2/1.3: run an entropy-coded stream through the codec's decoder, as loading
    does."""
    qinfo = metadata["weights"].get("quantization")
    if not has_codec(qinfo):
        return
    try:
        described = state_layout(metadata["decoder"])
    except (KeyError, TypeError, ValueError):
        return  # loading refuses a decoder it cannot build (a FormatError) before the codec
    decode_codes(tensors, qinfo, described, "fuzz")


Member = tuple[str, bytes, int]  # name, uncompressed bytes, zipfile compress type


def _members(data: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(i.filename, archive.read(i), i.compress_type) for i in archive.infolist()]


def _zip(members: list[Member]) -> bytes:
    """Re-zip, each member deflated or stored as it was (format 1.1 deflates zarr.json)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, payload, compression in members:
                info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                archive.writestr(info, payload)
    return buffer.getvalue()


def _fix_weights_checksum(members: list[Member]) -> list[Member]:
    contents = {name: payload for name, payload, _ in members}
    try:
        root = json.loads(contents["zarr.json"])
        weights = root["attributes"]["neurep"]["weights"]
        weights["sha256"] = hashlib.sha256(contents[WEIGHTS]).hexdigest()
        weights["nbytes"] = len(contents[WEIGHTS])
        encoded = json.dumps(root).encode()
    except Exception:
        return members
    return [(n, encoded if n == "zarr.json" else p, c) for n, p, c in members]


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate one ZIP member (or the member list) and re-zip; else mutate raw bytes."""
    rng = random.Random(seed)
    if rng.random() < 0.25:
        return atheris.Mutate(data, max_size)
    try:
        members = _members(data)
    except Exception:
        return atheris.Mutate(data, max_size)
    if not members:
        return atheris.Mutate(data, max_size)
    index = rng.randrange(len(members))
    name, payload, compression = members[index]
    action = rng.random()
    if action < 0.8:
        members[index] = (name, atheris.Mutate(payload, max(64, 2 * len(payload))), compression)
    elif action < 0.85:
        members.append(members[index])
    elif action < 0.9:
        del members[index]
    elif action < 0.95:  # only zarr.json members may be deflated: flip one either way
        flipped = zipfile.ZIP_STORED if compression else zipfile.ZIP_DEFLATED
        members[index] = (name, payload, flipped)
    else:
        mutated = atheris.Mutate(name.encode(), 64).decode("ascii", "replace") or "x"
        members[index] = (mutated, payload, compression)
    if rng.random() < 0.5:
        members = _fix_weights_checksum(members)
    result = _zip(members)
    return result if len(result) <= max_size else atheris.Mutate(data, max_size)


def write_seeds(directory: str) -> None:
    """Small valid files (image-like, video-like, compact-quantised, golden) as the corpus."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    cases = {
        "image": (rng.standard_normal((1, 4, 2, 3)).astype(np.float16), {}),
        "video": (rng.standard_normal((5, 2, 2, 2)).astype(np.float32), {}),
        "codes": (rng.integers(0, 64, (2, 3, 4)).astype(np.uint8), {"embedding": (1, 2, 3)}),
        "scalar": (np.array(1.5, dtype=np.float64), {}),
    }
    for label, (embedding, chunks) in cases.items():
        metadata = {
            "modality": {"name": label, "configuration": {"shape": [8, 8], "fps": 25.0}},
            "signal": {"shape": [1, 3, 8, 8], "loss": "mse"},
            "decoder": {"name": "tiny", "configuration": {"strides": [2, 2], "act": "silu"}},
            "encoder": None,
            "embedding": {
                "array": "embedding",
                "shape": list(embedding.shape),
                "dtype": embedding.dtype.name,
                "precision": "float32",
                "quantization": None,
            },
            "weights": {"precision": "float32", "quantization": None},
            "fit": {"steps": 3},
            "quality": {"psnr": 30.0, "ms_ssim": None},
        }
        tensors = {
            "a.weight": torch.randn(3, 2),
            "a.bias": torch.zeros(3, dtype=torch.float16),
            "codes": torch.arange(5, dtype=torch.uint8),
            "b": torch.ones(2, dtype=torch.bfloat16),
        }
        write_nrep(
            os.path.join(directory, f"seed-{label}.nrep"),
            metadata=metadata,
            arrays={"embedding": embedding},
            tensors=tensors,
            array_chunks=chunks,
        )
    _write_compact_seeds(directory, rng)
    for path in sorted(glob.glob(os.path.join(GOLDEN, "files", "*_v1_[123].nrep"))):
        shutil.copyfile(path, os.path.join(directory, f"seed-golden-{os.path.basename(path)}"))


def _write_compact_seeds(directory: str, rng: np.random.Generator) -> None:
    """Format 1.1's compact layout: flat ``codes``/``params``/cast/``raw_*`` tensors, qinfo v2."""
    spread = np.logspace(-3, 3, 16)  # channels of uneven ranges: codes per channel, axes 0 and 1
    arrays = {
        "conv.weight": rng.standard_normal((8, 2, 3, 3)),
        "rows.weight": rng.standard_normal((16, 64)) * spread[:, None],
        "up.weight": rng.standard_normal((4, 16, 4, 4)) * spread[:, None, None],
        "conv.bias": np.zeros(8),
    }
    state = {name: torch.from_numpy(a.astype(np.float32)) for name, a in arrays.items()}
    state["steps"] = torch.tensor([3], dtype=torch.int64)
    latent = rng.standard_normal((2, 4, 16, 16)) * np.logspace(-3, 3, 4)[:, None, None]
    described = {
        name: ("float32" if t.is_floating_point() else "int64", tuple(t.shape))
        for name, t in state.items()
    }
    for precision, embedding_precision, coded in (
        ("int5", "int8", False),
        ("int8", "int6", False),
        ("int8", "int8", True),
        ("float16", "float16", False),
    ):
        stored, qinfo = quantize_tensors(state, precision)
        tensors, weights = compact_tensors(stored, qinfo, list(state))
        if coded:  # the ans codec (forced: these random weights barely compress)
            tensors, weights = encode_codes(tensors, weights, described, always=True)
        codes, array_qinfo = quantize_array(latent, embedding_precision, axis=1)
        metadata = {
            "modality": {"name": "image", "configuration": {"shape": [16, 16, 3]}},
            "signal": {"shape": [2, 3, 32, 32], "loss": "mse"},
            "decoder": {"name": "tiny", "configuration": {"strides": [2], "act": "silu"}},
            "embedding": {
                "array": "embedding",
                "shape": list(codes.shape),
                "dtype": codes.dtype.name,
                "precision": embedding_precision,
                "quantization": compact_array(array_qinfo),
            },
            "weights": {"precision": precision, "quantization": weights},
            "fit": {"steps": 3},
        }
        write_nrep(
            os.path.join(directory, f"seed-compact-{precision}{'-ans' if coded else ''}.nrep"),
            metadata=metadata,
            arrays={"embedding": codes},
            tensors=tensors,
            array_chunks={"embedding": (1, 4, 16, 16)},
        )


def main(argv: list[str]) -> None:
    plain = "--plain" in argv
    argv = [arg for arg in argv if arg != "--plain"]
    corpus = next((arg for arg in argv[1:] if not arg.startswith("-")), None)
    # a file argument reproduces one input; an empty or missing directory gets the seeds
    if (
        corpus is not None
        and not os.path.isfile(corpus)
        and not (os.path.isdir(corpus) and os.listdir(corpus))
    ):
        write_seeds(corpus)
    if plain:
        atheris.Setup(argv, test_one_input)
    else:
        atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
