"""N-d arrays: 1-D signals, 2-D fields, 3-D volumes <-> signal ``(1, 1, *shape)``.

Inputs: numpy arrays and torch tensors of 1 to 3 dimensions with bool, integer or
floating-point values, and ``.npy`` files (read without pickle). Values are mapped to
``[0, 1]`` by the datum's own min-max, recorded in the configuration.

:meth:`ArrayAdapter.from_signal` gives back the same container (numpy for numpy arrays and
``.npy`` files, a CPU torch tensor for tensors), shape and dtype: integers rounded and clipped
to the recorded range, booleans true where the value is at least 0.5. Integers come back
exactly while their range (max - min) stays under 2**23; wider ranges are limited by the
float32 signal (relative error about 6e-8 of the range).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurep.errors import FormatError, InputError
from neurep.modalities import _scaling
from neurep.modalities.base import (
    ModalityAdapter,
    is_path,
    path_suffix,
    read_head,
)
from neurep.modalities.registry import register

MAX_NDIM = 3
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ArrayConfiguration:
    """What the adapter stores to restore the user's array. JSON-able via ``asdict``."""

    kind: str  # "numpy" | "torch" | "file"
    shape: list[int]
    dtype: str  # numpy dtype name, or torch dtype name for tensors
    value_range: list[float | int]
    source: str | None = None


class ArrayAdapter(ModalityAdapter):
    """1-D to 3-D numeric arrays; signal ``(1, 1, *shape)``, spatial_ndim = the array's ndim."""

    name: ClassVar[str] = "array"
    description: ClassVar[str] = (
        "numpy arrays or torch tensors of 1 to 3 dimensions (bool, integer, float), .npy files"
    )
    extensions: ClassVar[tuple[str, ...]] = (".npy",)

    Configuration: ClassVar[type] = ArrayConfiguration
    configuration: ArrayConfiguration

    def __init__(self, configuration: ArrayConfiguration) -> None:
        super().__init__(configuration)
        self.spatial_ndim = len(configuration.shape)

    @property
    def preset_profile(self) -> str:
        """1-D arrays take a preset's base settings, 2-D arrays are fitted as one-channel
        images ("image"), 3-D arrays as volumes ("volume")."""
        return {2: "image", 3: "volume"}.get(self.spatial_ndim, "array")

    # ---- choosing ------------------------------------------------------------------------

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        # Any array or tensor: from_object explains what is wrong with unsupported ones.
        if is_path(obj):
            return path_suffix(obj) in cls.extensions
        return isinstance(obj, np.ndarray | torch.Tensor)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return read_head(path).startswith(NPY_MAGIC)

    # ---- there ---------------------------------------------------------------------------

    @classmethod
    def from_object(cls, obj: Any) -> tuple[ArrayAdapter, torch.Tensor]:
        values, kind, dtype_name, source = _read_values(obj)
        _check_values(values)
        value_range = _scaling.data_min_max(values)
        configuration = ArrayConfiguration(
            kind=kind,
            shape=list(values.shape),
            dtype=dtype_name,
            value_range=list(value_range),
            source=source,
        )
        unit = _scaling.to_unit(values, *value_range)  # (*shape)
        return cls(configuration), torch.from_numpy(np.ascontiguousarray(unit))[None, None]

    # ---- back ----------------------------------------------------------------------------

    def from_signal(self, signal: torch.Tensor) -> np.ndarray | torch.Tensor:
        config = self.configuration
        unit = _scaling.signal_to_numpy(signal, (1, 1, *config.shape), type(self).__name__)
        if config.kind == "torch":
            working = _scaling.numpy_working_dtype(config.dtype)
            values = _scaling.from_unit(unit[0, 0], *config.value_range, working)
            return _scaling.numpy_to_tensor(values, config.dtype)
        return _scaling.from_unit(unit[0, 0], *config.value_range, np.dtype(config.dtype))

    def signal_shape(self) -> tuple[int, ...]:
        return (1, 1, *self.configuration.shape)

    def signal_as_tensor(self, signal: torch.Tensor) -> torch.Tensor:
        """``(1, 1, *shape)`` -> ``(1, *shape)`` float32 in the array's own units: each
        datum has its own min-max, so [0, 1] values would not compare across data."""
        low, high = self.value_range
        return (signal[0] * (high - low) + low).to(torch.float32)

    # ---- configuration -------------------------------------------------------------------

    @classmethod
    def check_configuration(cls, configuration: ArrayConfiguration) -> None:
        _check_configuration(configuration)

    # ---- measuring -----------------------------------------------------------------------

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.configuration.value_range
        return float(low), float(high)

    def as_array(self, obj: Any) -> np.ndarray:
        """``obj`` as ``(1, 1, *shape)`` float64 in original units."""
        values = _read_values(obj)[0]
        return values.astype(np.float64)[None, None]

    def __repr__(self) -> str:
        config = self.configuration
        return f"ArrayAdapter(kind={config.kind!r}, shape={config.shape}, dtype={config.dtype!r})"


def _read_values(obj: Any) -> tuple[np.ndarray, str, str, str | None]:
    """``obj`` as (values in native byte order, kind, dtype name, source file name)."""
    if is_path(obj):
        path = Path(os.fspath(obj))
        values = _read_npy(path)
        kind, dtype_name, source = "file", values.dtype.name, path.name
    elif isinstance(obj, np.ndarray):
        values, kind, dtype_name, source = obj, "numpy", obj.dtype.name, None
    elif isinstance(obj, torch.Tensor):
        values, dtype_name = _scaling.tensor_to_numpy(obj)
        kind, source = "torch", None
    else:
        raise InputError(
            f"cannot read {_scaling.describe(obj)} as an array; pass a numpy array, "
            "a torch tensor or a .npy file"
        )
    _scaling.check_numeric(values, "the array")
    return values.astype(values.dtype.newbyteorder("="), copy=False), kind, dtype_name, source


def _read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: cannot be read as a .npy array ({error})") from error


def _check_values(values: np.ndarray) -> None:
    if values.ndim == 0 or values.ndim > MAX_NDIM:
        raise InputError(
            f"an array datum has 1 to {MAX_NDIM} dimensions; got {values.ndim} "
            f"(shape {values.shape})"
            + ("; wrap a scalar with numpy.atleast_1d" if values.ndim == 0 else "")
        )
    if values.size == 0:
        raise InputError(f"the array is empty (shape {values.shape}); nothing to fit")
    _scaling.check_finite(values, "the array")


def _check_configuration(config: ArrayConfiguration) -> None:
    problems = []
    if config.kind not in ("numpy", "torch", "file"):
        problems.append(f"unknown kind {config.kind!r}")
    if not 1 <= len(config.shape) <= MAX_NDIM or min(config.shape, default=0) < 1:
        problems.append(f"bad shape {config.shape}")
    if len(config.value_range) != 2 or not all(
        isinstance(bound, int | float) for bound in config.value_range
    ):
        problems.append(f"bad value_range {config.value_range}")
    try:
        if config.kind == "torch":
            _scaling.torch_dtype(config.dtype)
            _scaling.numpy_working_dtype(config.dtype)
        else:
            np.dtype(config.dtype)
    except (TypeError, ValueError):
        problems.append(f"unknown dtype {config.dtype!r}")
    if problems:
        raise FormatError("array modality configuration is malformed: " + "; ".join(problems))


register(ArrayAdapter, priority=90)  # last: the fallback for any array or tensor
