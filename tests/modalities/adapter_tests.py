"""``AdapterTests``: the behaviour every modality adapter must have, written once.

A modality's test module subclasses it (``class TestImageAdapter(AdapterTests)``) and supplies

* ``adapter_cls``: the adapter class under test;
* a ``case`` fixture, parametrised over several valid inputs (files written into ``tmp_path``);
* ``expected_signature(original)``: (container type, shape, dtype name) its decoding must have;
* ``signature(obj)``: the same triple read from an object;
* ``invalid_inputs()``: objects ``from_object`` must refuse with InputError;
* ``foreign_objects()``: objects ``accepts`` must say no to.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from neurep.errors import FormatError, InputError
from neurep.modalities import ModalityAdapter, adapter_from_config


class AdapterTests:
    adapter_cls: ClassVar[type[ModalityAdapter]]

    # ---- hooks the subclass provides ------------------------------------------------------

    def signature(self, obj: Any) -> tuple[type, tuple[int, ...], str]:
        raise NotImplementedError

    def expected_signature(self, original: Any) -> tuple[type, tuple[int, ...], str]:
        return self.signature(original)

    def invalid_inputs(self) -> list[Any]:
        return []

    def foreign_objects(self) -> list[Any]:
        return [None, 3, "notes.txt", {"a": 1}]

    # ---- helpers --------------------------------------------------------------------------

    def fit_identity(self, original: Any) -> tuple[ModalityAdapter, torch.Tensor, Any]:
        """from_object, then from_signal of the untouched signal."""
        adapter, signal = self.adapter_cls.from_object(original)
        return adapter, signal, adapter.from_signal(signal)

    def round_trip_tolerance(self, adapter: ModalityAdapter) -> float:
        """Largest error allowed after an untouched round trip, in original units.

        Integers and booleans come back exactly while their range fits float32's 24-bit
        significand; beyond that, and for floats, they lose what float32 loses.
        """
        dtype = adapter.configuration.dtype
        if dtype in ("bool",) or dtype.startswith(("int", "uint")):
            return 0.0 if adapter.data_range < 2**23 else adapter.data_range * 2.0**-22
        eps = 1e-2 if dtype in ("float16", "bfloat16") else 1e-6
        return eps * max(adapter.data_range, 1e-30) + eps * 1e-3

    # ---- the shared behaviour -------------------------------------------------------------

    def test_accepts_its_inputs(self, case):
        assert self.adapter_cls.accepts(case)

    def test_accepts_no_foreign_objects(self):
        for obj in self.foreign_objects():
            assert not self.adapter_cls.accepts(obj), obj

    def test_signal_is_float32_batch_channels_spatial_in_unit_range(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        assert isinstance(adapter, self.adapter_cls)
        assert signal.dtype == torch.float32
        assert signal.ndim == 2 + adapter.spatial_ndim
        assert signal.shape[0] >= 1 and signal.shape[1] >= 1
        assert torch.isfinite(signal).all()
        assert signal.min() >= 0.0 and signal.max() <= 1.0

    def test_round_trip_restores_kind_shape_and_dtype(self, case):
        _, _, decoded = self.fit_identity(case)
        assert self.signature(decoded) == self.expected_signature(case)

    def test_round_trip_restores_values(self, case):
        adapter, _, decoded = self.fit_identity(case)
        original_values = adapter.as_array(case)
        decoded_values = adapter.as_array(decoded)
        tolerance = self.round_trip_tolerance(adapter)
        np.testing.assert_allclose(decoded_values, original_values, rtol=0, atol=tolerance)

    def test_signal_uses_the_whole_unit_range_unless_constant(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        values = adapter.as_array(case)
        low, high = adapter.configuration.value_range
        assert values.min() >= low and values.max() <= high
        if values.min() == values.max() == low:
            assert signal.max() == 0
        elif values.min() == low and values.max() == high:
            assert signal.min() == 0 and signal.max() == 1

    def test_config_survives_json(self, case):
        adapter, signal, decoded = self.fit_identity(case)
        config = adapter.to_config()
        assert config["name"] == self.adapter_cls.name
        text = json.dumps(config, allow_nan=False)
        rebuilt = adapter_from_config(json.loads(text))
        assert type(rebuilt) is self.adapter_cls
        assert rebuilt.to_config() == config
        assert rebuilt.spatial_ndim == adapter.spatial_ndim
        redecoded = rebuilt.from_signal(signal)
        assert self.signature(redecoded) == self.signature(decoded)
        np.testing.assert_array_equal(adapter.as_array(redecoded), adapter.as_array(decoded))

    def test_from_signal_clips_to_the_recorded_range(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        overshoot = signal * 3.0 - 1.0  # values in [-1, 2]
        values = adapter.as_array(adapter.from_signal(overshoot))
        low, high = adapter.configuration.value_range
        assert values.min() >= low and values.max() <= high

    def test_from_signal_refuses_a_wrong_shape(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        with pytest.raises(ValueError, match="shape"):
            adapter.from_signal(torch.cat([signal, signal], dim=-1))

    def test_quality_is_infinite_for_identity_and_finite_after_noise(self, case):
        adapter, signal, decoded = self.fit_identity(case)
        if self.round_trip_tolerance(adapter) == 0:
            assert adapter.quality(case, decoded)["psnr"] == math.inf
        generator = torch.Generator().manual_seed(0)
        noisy = signal + 0.2 * torch.randn(signal.shape, generator=generator)
        noisy[..., 0] = 1 - signal[..., 0]  # surely changes booleans and 8-bit values too
        noisy_quality = adapter.quality(case, adapter.from_signal(noisy))
        if adapter.data_range > 0:
            assert math.isfinite(noisy_quality["psnr"])
            assert noisy_quality["psnr"] < adapter.quality(case, decoded)["psnr"]

    def test_measure_psnr_is_the_psnr_that_measure_reports(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        generator = torch.Generator().manual_seed(1)
        unit = signal.float() / 255 if signal.dtype == torch.uint8 else signal.float()
        noisy = (unit + 0.1 * torch.randn(signal.shape, generator=generator)).clamp(0, 1)

        class Decoding:  # the two ways a NeuralDatum hands out its decoding
            def decode_signal(self):
                return noisy

            def decode(self):
                return adapter.from_signal(noisy)

        full = adapter.measure(case, Decoding())["psnr"]
        assert adapter.measure_psnr(case, Decoding()) == pytest.approx(full, rel=1e-12)

    def test_invalid_inputs_raise_input_error(self):
        for obj in self.invalid_inputs():
            with pytest.raises(InputError):
                self.adapter_cls.from_object(obj)

    def test_malformed_config_raises_format_error(self, case):
        adapter, _ = self.adapter_cls.from_object(case)
        config = adapter.to_config()
        for key in list(config["configuration"]):
            broken = json.loads(json.dumps(config))
            del broken["configuration"][key]
            with pytest.raises(FormatError, match=key):
                self.adapter_cls.from_config(broken)
        with pytest.raises(FormatError):
            self.adapter_cls.from_config({"name": "someone-else", "configuration": {}})
        broken = json.loads(json.dumps(config))
        broken["configuration"]["shape"] = [0]
        with pytest.raises(FormatError, match="shape"):
            self.adapter_cls.from_config(broken)
