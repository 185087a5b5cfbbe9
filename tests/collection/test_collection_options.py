"""fit_collection's options: refinement, the quality floor, a training sample, and bringing
image items of several sizes to one (resize or crop)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _threads import one_thread
from collection_helpers import random_image
from PIL import Image

import neurep
from neurep.collection import _items, build


def smooth_image(seed: int, side: int = 16) -> np.ndarray:
    """A smooth seeded image: learnable, so refinement has something to gain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    a, b, c = rng.uniform(0.5, 3, 3)
    channels = [np.sin(a * x + b * y + k) * 0.5 + 0.5 for k in (0, c, 2 * c)]
    return (np.stack(channels, -1) * 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def fit(items, folder, **options):
    options = {"embedding_channels": 2, "epochs": 3, "progress": False, **options}
    return one_thread(lambda: neurep.fit_collection(items, folder, **options))


@pytest.fixture(scope="module")
def smooth_items():
    return [smooth_image(seed) for seed in range(10)]


def test_refinement_improves_the_mean_psnr_and_is_recorded(tmp_path, smooth_items):
    plain = fit(smooth_items, tmp_path / "plain", epochs=30)
    refined = fit(smooth_items, tmp_path / "refined", epochs=30, refine_steps=25)
    before = np.mean([plain.record(i)["psnr"] for i in range(len(plain))])
    after = np.mean([refined.record(i)["psnr"] for i in range(len(refined))])
    assert after > before + 0.05, (before, after)
    assert {refined.record(i)["refine_steps"] for i in range(len(refined))} == {25}
    assert {plain.record(i)["refine_steps"] for i in range(len(plain))} == {0}
    for i in (0, 7):  # the record is the stored codes' quality
        assert refined.record(i)["psnr"] == pytest.approx(
            psnr(refined[i].decode(), smooth_items[i]), abs=1e-3
        )


def test_the_quality_floor_refines_items_below_it_and_warns(tmp_path, smooth_items, monkeypatch):
    monkeypatch.setattr(build, "FLOOR_REFINE_STEPS", 5)
    plain = fit(smooth_items[:4], tmp_path / "plain")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        floored = fit(smooth_items[:4], tmp_path / "floored", quality_floor=99.0)
    below = [str(w.message) for w in caught if "below the quality floor" in str(w.message)]
    assert len(below) == 4 and "item 'item000002'" in " ".join(below)
    for i in range(4):  # never worse than without the floor; the extra steps are recorded
        record = floored.record(i)
        assert record["psnr"] >= plain.record(i)["psnr"] - 1e-6
        assert record["refine_steps"] in (0, 5)
    assert any(floored.record(i)["refine_steps"] == 5 for i in range(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(smooth_items[:4], tmp_path / "low", quality_floor=1.0)
    assert not [w for w in caught if "below the quality floor" in str(w.message)]


def test_a_training_sample_embeds_every_item(tmp_path):
    items = [random_image(seed) for seed in range(9)]
    collection = fit(items, tmp_path / "sample", train_items=4, epochs=1)
    assert collection.fit_record["train_items"] == 4 and len(collection) == 9
    with pytest.raises(neurep.InputError, match="train_items"):
        fit(items, tmp_path / "none", train_items=0)


def test_items_of_several_sizes_are_resized_or_cropped_to_one(tmp_path):
    rng = np.random.default_rng(5)
    sizes = [(20, 30), (16, 16), (40, 24)]  # (height, width)
    items = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    with pytest.raises(neurep.InputError, match="resize or crop"):
        fit(items, tmp_path / "refused")
    cropped = fit(items, tmp_path / "crop", size=(16, 16), fit_to="crop")
    for i, (h, w) in enumerate(sizes):
        top, left = (h - 16) // 2, (w - 16) // 2
        centre = items[i][top : top + 16, left : left + 16]
        decoded = cropped[i].decode()
        assert decoded.shape == (16, 16, 3)
        assert cropped.record(i)["psnr"] == pytest.approx(psnr(decoded, centre), abs=1e-3)
    resized = fit(items, tmp_path / "resize", size=(16, 16))
    expected = np.asarray(Image.fromarray(items[0]).resize((16, 16), Image.Resampling.BICUBIC))
    assert resized.record(0)["psnr"] == pytest.approx(psnr(resized[0].decode(), expected), abs=1e-3)
    grown = one_thread(
        lambda: neurep.append(tmp_path / "crop", [items[2]], names=["again"], progress=False)
    )
    assert grown[len(grown) - 1].decode().shape == (16, 16, 3)  # append applies the sizing
    with pytest.raises(neurep.InputError, match="smaller than the crop"):
        neurep.append(tmp_path / "crop", [items[1][:8]], names=["tiny"], progress=False)


def test_bad_arguments_are_input_errors(tmp_path):
    items = [random_image(seed) for seed in range(2)]
    with pytest.raises(neurep.InputError, match="at least one item"):
        fit([], tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(neurep.InputError, match="not an empty folder"):
        fit(items, tmp_path / "full")
    with pytest.raises(neurep.InputError, match="2 items but 1 names"):
        fit(items, tmp_path / "names", names=["a"])
    with pytest.raises(neurep.InputError, match="fit_to"):
        fit(items, tmp_path / "how", size=(16, 16), fit_to="stretch")
    with pytest.raises(neurep.InputError, match="projection"):
        fit(items, tmp_path / "proj", projection="fft")
    with pytest.raises(neurep.InputError, match="not a collection"):
        neurep.append(tmp_path / "nowhere", items)
    assert not (tmp_path / "names").exists() and not (tmp_path / "how").exists()


def test_the_s3k_projection_is_stored_and_reloads(tmp_path):
    items = [random_image(seed) for seed in range(3)]
    collection = fit(items, tmp_path / "s3k", projection="s3k", epochs=1)
    encoder = neurep.load(tmp_path / "s3k").model_metadata["encoder"]["configuration"]
    assert encoder["projection"] == "s3k" and encoder["state_norm"] is True
    reloaded = neurep.load(tmp_path / "s3k")
    assert np.array_equal(reloaded[1].decode(), collection[1].decode())


def test_training_items_of_8_bit_data_are_held_as_bytes():
    import torch

    from neurep.fitting.loop import as_unit

    codes = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    exact = as_unit(codes)
    held = _items.as_bytes_if_exact(exact)
    assert held.dtype == torch.uint8 and torch.equal(as_unit(held), exact)
    finer = exact + 1e-4  # not k / 255: kept as it is
    assert _items.as_bytes_if_exact(finer) is finer
