"""BD-rate / BD-PSNR and the per-codec output files of benchmarks/rate_distortion.py, on
synthetic curves (no fits, no encoding)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bjontegaard")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import rate_distortion as rd

TARGETS = [0.125, 0.25, 0.5, 1.0, 2.0]


def results(bpp, psnr) -> dict:
    """A CompressAI ``results`` dict: bpp (bits/pixel) and psnr-rgb (dB), one per target."""
    return {"target_bpp": TARGETS[: len(bpp)], "bpp": list(bpp), "psnr-rgb": list(psnr)}


def curve(shift_db: float = 0.0, rate_scale: float = 1.0, n: int = 5) -> dict:
    """PSNR = 30 + 4 log2(bpp / rate_scale) + shift_db at the first ``n`` targets."""
    bpp = np.array(TARGETS[:n]) * rate_scale
    return results(bpp, 30 + 4 * np.log2(bpp / rate_scale) + shift_db)


def test_a_curve_against_itself_is_zero():
    out = rd.bd_metrics(curve(), curve())
    assert out["bd_rate_percent"] == pytest.approx(0, abs=1e-9)
    assert out["bd_psnr_db"] == pytest.approx(0, abs=1e-9)
    assert out["bd_rate_reason"] is None and out["bd_psnr_reason"] is None


def test_one_db_up_is_bd_psnr_one_and_a_negative_bd_rate():
    out = rd.bd_metrics(curve(), curve(shift_db=1.0))
    assert out["bd_psnr_db"] == pytest.approx(1.0, abs=1e-9)
    # 4 dB per doubling: 1 dB is 2**-0.25 of the bits
    assert out["bd_rate_percent"] == pytest.approx((2**-0.25 - 1) * 100, abs=1e-6)


def test_half_the_bits_is_bd_rate_minus_fifty():
    out = rd.bd_metrics(curve(), curve(rate_scale=0.5))
    assert out["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-6)
    assert out["bd_psnr_db"] == pytest.approx(4.0, abs=1e-6)


def test_too_few_points_or_no_overlap_give_null_with_a_reason():
    few = rd.bd_metrics(curve(n=3), curve())
    assert few["bd_rate_percent"] is None and "3 points" in few["bd_rate_reason"]
    assert few["bd_psnr_db"] is None and "3 points" in few["bd_psnr_reason"]
    apart = rd.bd_metrics(curve(), curve(rate_scale=100.0, shift_db=50.0))
    assert apart["bd_psnr_db"] is None and "do not overlap" in apart["bd_psnr_reason"]
    assert apart["bd_rate_percent"] is None and "do not overlap" in apart["bd_rate_reason"]


def test_psnr_not_rising_with_rate_skips_only_bd_rate():
    bumpy = curve()
    bumpy["psnr-rgb"][2] = bumpy["psnr-rgb"][3] + 0.1
    out = rd.bd_metrics(curve(), bumpy)
    assert out["bd_rate_percent"] is None and "does not rise" in out["bd_rate_reason"]
    assert out["bd_psnr_db"] is not None


def test_summary_and_one_compressai_object_per_file(tmp_path):
    objs = {
        c: {"name": c, "description": "", "results": curve(shift_db=s)}
        for c, s in (("neurep", 0.5), ("jpeg", 0.0), ("webp", 1.0))
    }
    summary = rd.bd_summary(objs)
    assert summary["test_codec"] == "neurep" and set(summary["against"]) == {"jpeg", "webp"}
    assert summary["against"]["jpeg"]["psnr_diff_db"] == pytest.approx([0.5] * 5)
    assert summary["against"]["jpeg"]["ahead_at_target_bpp"] == TARGETS
    assert summary["against"]["webp"]["behind_at_target_bpp"] == TARGETS
    assert summary["against"]["webp"]["bd_psnr_db"] == pytest.approx(-0.5, abs=1e-9)
    paths = rd.write_results(tmp_path / "rd_x", objs, summary)
    assert sorted(p.name for p in paths) == [
        "jpeg.json",
        "neurep.json",
        "rd_x_summary.json",
        "webp.json",
    ]
    assert sorted(p.name for p in (tmp_path / "rd_x").iterdir()) == [
        "jpeg.json",
        "neurep.json",
        "webp.json",
    ]  # the folder holds only result files, which CompressAI's plot tool reads
    one = json.loads((tmp_path / "rd_x" / "jpeg.json").read_text())
    assert one["name"] == "jpeg" and one["results"]["bpp"] == objs["jpeg"]["results"]["bpp"]


def test_asking_for_a_codec_pillow_lacks_stops_with_a_message(monkeypatch):
    monkeypatch.setattr(rd.cc, "available", lambda codec: codec != "avif")
    with pytest.raises(SystemExit, match="cannot write"):
        rd.cc.parse_codecs("jpeg,avif", rd.ALL_CODECS)
    assert rd.cc.parse_codecs("neurep,jpeg", rd.ALL_CODECS) == ["neurep", "jpeg"]


def test_a_codec_stuck_at_its_lowest_quality_counts_that_point_once():
    floor = curve()
    floor["bpp"][0], floor["psnr-rgb"][0] = floor["bpp"][1], floor["psnr-rgb"][1]
    out = rd.bd_metrics(floor, curve())
    assert out["points"] == {"codec": 4, "test": 5}
    assert out["bd_psnr_db"] == pytest.approx(0, abs=1e-9)
    assert rd.per_target_difference(floor, curve())["codec_more_bits_at_target_bpp"] == [0.125]
