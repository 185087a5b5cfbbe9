"""The append-only index, and the settings hash that says whether a fit is still current."""

from __future__ import annotations

import pytest

import neurep
from neurep.conversion.index import IndexWriter, read_index
from neurep.conversion.settings import fit_settings, settings_hash
from neurep.fitting.presets import PRESETS


def test_the_latest_line_about_an_output_wins(tmp_path):
    path = tmp_path / "index.jsonl"
    with IndexWriter(path) as index:
        index.append({"output": "a.nrep", "status": "error", "error": "boom"})
        index.append({"output": "b.nrep", "status": "ok", "quality": {"psnr": float("inf")}})
        index.append({"output": "a.nrep", "status": "ok"})
    state = read_index(path)
    assert state.latest["a.nrep"]["status"] == "ok"
    assert state.latest["b.nrep"]["quality"] == {"psnr": None}  # strict JSON: no Infinity
    assert (state.lines, state.bad_lines) == (3, 0)


def test_a_truncated_last_line_is_ignored_and_never_swallows_the_next(tmp_path):
    path = tmp_path / "index.jsonl"
    path.write_bytes(b'{"output": "a.nrep", "status": "ok"}\n{"output": "b.nr')
    assert set(read_index(path).latest) == {"a.nrep"}
    with IndexWriter(path) as index:
        index.append({"output": "c.nrep", "status": "ok"})
    state = read_index(path)
    assert set(state.latest) == {"a.nrep", "c.nrep"}
    assert state.bad_lines == 1


def test_a_missing_index_is_empty(tmp_path):
    assert read_index(tmp_path / "index.jsonl").latest == {}


def test_settings_given_or_defaulted_hash_alike():
    assert settings_hash(fit_settings({"preset": "fast"})) == settings_hash(
        fit_settings({"preset": "fast", "seed": 0, "device": "cpu", "psnr": None})
    )


def test_every_setting_that_changes_a_fit_changes_the_hash():
    base = settings_hash(fit_settings({"preset": "fast"}))
    changed = [
        {"preset": "balanced"},
        {"preset": "fast", "steps": 3},
        {"preset": "fast", "seed": 1},
        {"preset": "fast", "precision": "int6"},
        {"preset": "fast", "max_bytes": 2000},
        {"preset": PRESETS["fast"].with_overrides(train_encoder=False)},
    ]
    hashes = {settings_hash(fit_settings(options)) for options in changed}
    assert base not in hashes and len(hashes) == len(changed)
    assert fit_settings({})["format"] == "1.3"


def test_an_unknown_fit_option_is_refused_before_any_fit():
    with pytest.raises(neurep.InputError, match="unknown fit option 'stpes'"):
        fit_settings({"stpes": 3})
    fit_settings({"frames": (0, 4)})  # a modality's read option (video) is known
