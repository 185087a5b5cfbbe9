"""``neurep info COLLECTION [ITEM]``: the summary's figures and one item's record."""

from __future__ import annotations

import json

import numpy as np
import pytest

import neurep
from neurep.cli.main import main


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    rng = np.random.default_rng(3)
    items = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    folder = tmp_path_factory.mktemp("info") / "col"
    return neurep.fit_collection(
        items, folder, embedding_channels=2, epochs=1, shard_items=2, progress=False
    )


def test_summary_json_counts_items_shards_and_bytes(collection, capsys):
    assert main(["info", str(collection.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    files = collection.files()
    shard_bytes = sum(p.stat().st_size for p in files["shards"])
    assert report["items"] == 5 and report["shards"] == 3
    assert report["shard_bytes"] == shard_bytes
    assert report["bytes_per_item"] == pytest.approx(shard_bytes / 5)
    assert report["model_bytes"] == files["model"].stat().st_size
    assert report["embedding_shape"] == [2, 2, 2] and report["item_shape"] == [3, 16, 16]
    psnrs = [collection.record(i)["psnr"] for i in range(5)]
    assert report["mean_psnr"] == pytest.approx(sum(psnrs) / 5)


def test_summary_text_and_item_record(collection, capsys):
    assert main(["info", str(collection.path)]) == 0
    text = capsys.readouterr().out
    assert "5 in 3 shards" in text and "neurep collection" in text
    assert main(["info", str(collection.path), "4"]) == 0
    assert json.loads(capsys.readouterr().out) == collection.record(4)


def test_item_out_of_range_is_a_one_line_error(collection, capsys):
    assert main(["info", str(collection.path), "9"]) != 0
    assert "item 9 of 5" in capsys.readouterr().err
