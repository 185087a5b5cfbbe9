"""Data made of several items (video frames): any range of items decodes on its own.

No modality produces several items yet (video is next), so the datum is assembled by hand
from a real decoder, an embedding of three items, and a modality that accepts them.
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch

import neurep
from neurep.datum import NeuralDatum
from neurep.models import build


def _three_item_datum() -> NeuralDatum:
    torch.manual_seed(0)
    decoder = build(
        {
            "name": "conv_transpose",
            "configuration": {
                "ndim": 2,
                "in_channels": 4,
                "out_channels": 3,
                "strides": [2, 2],
                "widths": [6],
            },
        }
    )
    embedding = torch.randn(3, 4, 5, 6).numpy()
    adapter_config = {
        "name": "array",
        "configuration": {
            "kind": "numpy",
            "shape": [3, 20, 24],
            "dtype": "float32",
            "value_range": [0.0, 1.0],
        },
    }
    metadata = {
        "modality": adapter_config,
        "signal": {"shape": [3, 3, 19, 24], "loss": "mse"},
        "decoder": decoder.to_config(),
        "encoder": None,
        "embedding": {
            "array": "embedding",
            "shape": [3, 4, 5, 6],
            "dtype": "float32",
            "precision": "int8",
            "quantization": None,
        },
        "weights": {"precision": "int8", "quantization": None},
        "fit": {},
        "quality": {"psnr": None, "ms_ssim": None},
    }
    datum = NeuralDatum(metadata, decoder=decoder, embedding=embedding)
    datum.freeze_storage()
    return datum


def test_a_range_of_items_decodes_like_the_same_rows_of_the_whole(tmp_path):
    datum = _three_item_datum()
    whole = datum.decode_signal()
    assert whole.shape == (3, 3, 19, 24)
    torch.testing.assert_close(datum.decode_signal(slice(1, 3)), whole[1:3], rtol=0, atol=0)
    path = tmp_path / "items.nrep"
    datum.save(path)
    loaded = neurep.load(path)
    assert loaded.num_items == 3
    torch.testing.assert_close(loaded.decode_signal(), whole, rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode_signal(slice(2, 3)), whole[2:3], rtol=0, atol=0)


def test_small_item_embeddings_share_a_chunk(tmp_path):
    datum = _three_item_datum()
    path = tmp_path / "items.nrep"
    datum.save(path)
    with zipfile.ZipFile(path) as archive:
        chunks = [n for n in archive.namelist() if n.startswith("embedding/c/")]
    assert len(chunks) == 1  # 3 x 120 bytes of int8 codes: one ~4 kB chunk holds them
    assert np.asarray(datum.embedding()).shape == (3, 4, 5, 6)
