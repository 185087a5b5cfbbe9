"""A modality defined outside neurep fits, saves, loads and decodes through the normal verbs."""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import neurep
from neurep.fitting import Preset, get_preset
from neurep.modalities import ModalityAdapter, adapter_from_config, register, registry, unregister


@dataclass(frozen=True)
class Spectrum:
    """The plugin's own datum type: samples of a 1-D spectrum and the rate they were taken at."""

    values: np.ndarray  # (N,) float64
    rate: float


@dataclass(frozen=True)
class SpectrumConfiguration:
    length: int
    rate: float
    value_range: list[float]


class SpectrumAdapter(ModalityAdapter):
    """Spectrum <-> signal (1, 1, N), min-max scaled; nothing in it is known to neurep."""

    name: ClassVar[str] = "spectrum"
    description: ClassVar[str] = "Spectrum objects (a test plugin)"
    Configuration: ClassVar[type] = SpectrumConfiguration
    spatial_ndim = 1

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, Spectrum)

    @classmethod
    def from_object(cls, obj: Spectrum) -> tuple[SpectrumAdapter, torch.Tensor]:
        low, high = float(obj.values.min()), float(obj.values.max())
        unit = (obj.values - low) / (high - low)
        configuration = SpectrumConfiguration(len(obj.values), obj.rate, [low, high])
        return cls(configuration), torch.tensor(unit, dtype=torch.float32)[None, None]

    def from_signal(self, signal: torch.Tensor) -> Spectrum:
        low, high = self.value_range
        values = low + signal[0, 0].double().numpy() * (high - low)
        return Spectrum(values, self.configuration.rate)

    @classmethod
    def check_configuration(cls, configuration: SpectrumConfiguration) -> None:
        if configuration.length < 2 or configuration.rate <= 0:
            raise neurep.FormatError(f"bad spectrum configuration {configuration}")

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.configuration.value_range
        return low, high

    def as_array(self, obj: Spectrum) -> np.ndarray:
        return np.asarray(obj.values, np.float64)[None, None]


@pytest.fixture
def spectrum_plugin():
    register(SpectrumAdapter)
    yield SpectrumAdapter
    unregister(SpectrumAdapter.name)


def _spectrum(length: int = 300) -> Spectrum:
    x = np.linspace(0, 1, length)
    return Spectrum(np.exp(-((x - 0.4) ** 2) / 0.01) + 0.3 * x, rate=48_000.0)


def test_a_plugin_modality_round_trips_through_fit_save_load_decode(spectrum_plugin, tmp_path):
    original = _spectrum()
    datum = neurep.fit(original, preset="fast", steps=60, progress=False)
    assert datum.metadata["modality"]["name"] == "spectrum"
    path = tmp_path / "spectrum.nrep"
    datum.save(path)
    decoded = neurep.load(path).decode()
    assert isinstance(decoded, Spectrum) and decoded.rate == original.rate
    assert decoded.values.shape == original.values.shape
    np.testing.assert_array_equal(decoded.values, datum.decode().values)
    assert datum.metadata["quality"]["psnr"] > 20  # it learned the curve, not a constant
    assert neurep.open(path).metadata["modality"]["configuration"]["rate"] == 48_000.0


def test_a_plugin_gets_its_own_profile_of_a_preset(spectrum_plugin):
    preset = Preset("mine", 9, 2e-2, profiles={"spectrum": {"steps": 3}, "image": {"steps": 7}})
    datum = neurep.fit(_spectrum(), preset=preset, progress=False)
    assert datum.metadata["fit"]["steps"] == 3
    built_in = neurep.fit(_spectrum(), preset=get_preset("fast"), steps=2, progress=False)
    assert built_in.metadata["fit"]["steps"] == 2


def test_a_plugin_configuration_is_parsed_and_checked_from_the_file(spectrum_plugin):
    fields = {"length": "64", "rate": 8, "value_range": [0, 1]}
    config = {"name": "spectrum", "configuration": fields}
    adapter = adapter_from_config(config)
    assert adapter.configuration == SpectrumConfiguration(64, 8.0, [0, 1])
    with pytest.raises(neurep.FormatError, match="lacks the field 'rate'"):
        adapter_from_config({"name": "spectrum", "configuration": {"length": 3}})
    with pytest.raises(neurep.FormatError, match="malformed"):
        adapter_from_config(
            {"name": "spectrum", "configuration": {"length": [], "rate": 1, "value_range": []}}
        )
    with pytest.raises(neurep.FormatError, match="bad spectrum"):
        adapter_from_config(
            {"name": "spectrum", "configuration": {"length": 9, "rate": -1, "value_range": []}}
        )


def _entry_point_module(tmp_path, monkeypatch, name: str, body: str):
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint(name, name, registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        registry.importlib.metadata, "entry_points", lambda group: [point] if group else []
    )
    monkeypatch.setattr(registry, "_discovered", False)


def test_an_entry_point_plugin_loads_when_its_files_are_read(tmp_path, monkeypatch):
    body = (
        "from tests_plugin_support import SpectrumAdapter\n"
        "from neurep.modalities import register\n"
        "register(SpectrumAdapter)\n"
    )
    monkeypatch.setitem(sys.modules, "tests_plugin_support", sys.modules[__name__])
    _entry_point_module(tmp_path, monkeypatch, "neurep_spectrum_plugin", body)
    try:
        fields = {"length": 5, "rate": 1, "value_range": [0, 1]}
        config = {"name": "spectrum", "configuration": fields}
        assert isinstance(adapter_from_config(config), SpectrumAdapter)
    finally:
        unregister("spectrum")
        sys.modules.pop("neurep_spectrum_plugin", None)


def test_a_broken_entry_point_plugin_warns_and_leaves_the_built_ins(tmp_path, monkeypatch):
    _entry_point_module(tmp_path, monkeypatch, "neurep_broken_plugin", "raise ImportError('x')\n")
    with pytest.warns(RuntimeWarning, match="neurep_broken_plugin"):
        names = neurep.modalities.names()
    assert "image" in names and "array" in names
