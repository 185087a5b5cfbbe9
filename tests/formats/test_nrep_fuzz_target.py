"""The atheris fuzz target stays runnable: its seeds are valid and its harness accepts them."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("atheris")

FUZZ_TARGET = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_nrep.py"


def test_fuzz_seeds_are_valid_files_and_the_harness_accepts_damaged_ones(tmp_path):
    spec = importlib.util.spec_from_file_location("fuzz_nrep", FUZZ_TARGET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_seeds(str(tmp_path))
    seeds = sorted(tmp_path.iterdir())
    assert len(seeds) >= 4
    from neurep.formats import open_nrep

    for seed in seeds:
        data = seed.read_bytes()
        with open_nrep(data) as reader:
            assert reader.read_tensors()
        module.test_one_input(data)  # only FormatError may be swallowed; others propagate
        for cut in range(0, len(data), 97):
            module.test_one_input(data[:cut])
