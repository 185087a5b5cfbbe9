"""Format 1.1's fixed overhead: what a file costs beyond its payload."""

from __future__ import annotations

import zipfile

import numpy as np
import safetensors.torch

import neurep


def test_the_fixed_overhead_of_the_smallest_file_is_at_most_1536_bytes(tmp_path):
    """overhead = file bytes - weights payload - embedding payload, where the weights payload
    is the data section of ``weights.safetensors`` (every tensor's bytes: codes, float16
    values, quantisation parameters; not its 8-byte length or JSON header) and the embedding
    payload is the bytes of its chunk members as stored. So the overhead is the ZIP headers,
    every zarr.json and the safetensors header."""
    datum = neurep.fit(np.array([0.5]), preset="fast", steps=2, progress=False, precision="int8")
    path = tmp_path / "one.nrep"
    size = datum.save(path)
    with zipfile.ZipFile(path) as archive:
        tensors = safetensors.torch.load(archive.read("weights.safetensors"))
        weights = sum(t.numel() * t.element_size() for t in tensors.values())
        chunks = [i for i in archive.infolist() if i.filename.startswith("embedding/c/")]
        embedding = sum(i.compress_size for i in chunks)
    overhead = size - weights - embedding
    print(f"fixed overhead: {overhead} bytes ({size} - {weights} weights - {embedding} embedding)")
    assert overhead <= 1536
