"""Atheris fuzz target for the ``.nrep`` reader (issue #5).

Property: for ANY input bytes, ``open_nrep`` / ``read_array`` / ``read_tensors`` either work or
raise :class:`neurep.FormatError` (or a subclass); any other exception, a hang (``-timeout``)
or an oversized allocation (``-malloc_limit_mb`` / ``-rss_limit_mb``) is a crash.

Run (one core; seeds are written to the corpus directory first if it is empty)::

    .venv/bin/python -m pip install 'neurep[fuzz]'          # atheris
    .venv/bin/python fuzz/fuzz_nrep.py fuzz/corpus -max_total_time=600 \\
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512

A structure-aware custom mutator keeps most inputs valid ZIPs (CRCs recomputed, and the
weights checksum in the metadata updated half of the time) so mutations reach the metadata,
zarr and safetensors validators instead of dying at the CRC check. ``--plain`` uses only
libFuzzer's byte-level mutations.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import warnings
import zipfile

import atheris

with atheris.instrument_imports(include=["neurep"]):
    import numpy as np
    import torch

    from neurep.errors import FormatError
    from neurep.formats import ReadLimits, open_nrep, write_nrep

# Small enough that a legitimately large (but allowed) declaration does not slow fuzzing;
# the property checked is the same for any limits.
LIMITS = ReadLimits(max_decoded_bytes=64 << 20, max_elements=1 << 24, max_file_bytes=64 << 20)
WEIGHTS = "weights.safetensors"


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
                reader.read_tensors()
        except FormatError:
            pass


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, payload in members:
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), payload)
    return buffer.getvalue()


def _fix_weights_checksum(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    contents = dict(members)
    try:
        root = json.loads(contents["zarr.json"])
        weights = root["attributes"]["neurep"]["weights"]
        weights["sha256"] = hashlib.sha256(contents[WEIGHTS]).hexdigest()
        weights["nbytes"] = len(contents[WEIGHTS])
        encoded = json.dumps(root).encode()
    except Exception:
        return members
    return [(name, encoded if name == "zarr.json" else payload) for name, payload in members]


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
    name, payload = members[index]
    action = rng.random()
    if action < 0.8:
        members[index] = (name, atheris.Mutate(payload, max(64, 2 * len(payload))))
    elif action < 0.85:
        members.append(members[index])
    elif action < 0.9:
        del members[index]
    else:
        mutated = atheris.Mutate(name.encode(), 64).decode("ascii", "replace") or "x"
        members[index] = (mutated, payload)
    if rng.random() < 0.5:
        members = _fix_weights_checksum(members)
    result = _zip(members)
    return result if len(result) <= max_size else atheris.Mutate(data, max_size)


def write_seeds(directory: str) -> None:
    """A few small valid files (image-like, video-like, quantised) as the starting corpus."""
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
