"""Numeric helpers shared by adapters: dtype checks, value ranges, [0, 1] scaling and back."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurep.errors import InputError

NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float


def check_numeric(values: np.ndarray, what: str) -> None:
    """Raise InputError unless ``values`` has a real numeric dtype (bool, int, float)."""
    kind = values.dtype.kind
    if kind == "c":
        raise InputError(
            f"{what} has complex dtype {values.dtype}; neurep fits real values: "
            "pass the real and imaginary parts (or abs/angle) as separate data"
        )
    if kind not in NUMERIC_KINDS:
        raise InputError(
            f"{what} has dtype {values.dtype}, which is not numeric; "
            "use bool, integer or floating-point values"
        )


def check_finite(values: np.ndarray, what: str) -> None:
    """Raise InputError if a floating ``values`` holds NaN or infinity."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(values.size - np.isfinite(values).sum())
        raise InputError(
            f"{what} holds {bad} non-finite value(s) (NaN or inf); "
            "replace them (e.g. numpy.nan_to_num) before fitting"
        )


def data_min_max(values: np.ndarray) -> tuple[float | int, float | int]:
    """Smallest and largest value as JSON-able numbers: ints for bool/int dtypes, else floats."""
    low, high = values.min(), values.max()
    if values.dtype.kind in "biu":
        return int(low), int(high)
    return float(low), float(high)


def to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``values`` from ``[low, high]`` to ``[0, 1]`` as float32 (all zeros if low == high)."""
    values64 = values.astype(np.float64)
    span = float(high) - float(low)
    if span == 0:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values64 - float(low)) / span, 0.0, 1.0).astype(np.float32)


def from_unit(unit: np.ndarray, low: float, high: float, dtype: np.dtype) -> np.ndarray:
    """Map ``unit`` (about ``[0, 1]``) back to ``[low, high]`` in ``dtype``.

    Values are clipped to the range; integers are rounded to the nearest; booleans are the
    values at or above 0.5 (in original units).
    """
    values = float(low) + np.clip(unit.astype(np.float64), 0.0, 1.0) * (float(high) - float(low))
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return values >= 0.5
    if dtype.kind in "iu":
        return np.clip(np.rint(values), low, high).astype(dtype)
    return np.clip(values, low, high).astype(dtype)


def signal_to_numpy(signal: torch.Tensor, expected_shape: tuple[int, ...], who: str) -> np.ndarray:
    """A signal tensor as float64 numpy after checking its shape is ``expected_shape``."""
    if not isinstance(signal, torch.Tensor):
        raise TypeError(f"{who}.from_signal expects a torch.Tensor, got {type(signal).__name__}")
    if tuple(signal.shape) != tuple(expected_shape):
        raise ValueError(
            f"{who}.from_signal expects a signal of shape {tuple(expected_shape)}, "
            f"got {tuple(signal.shape)}"
        )
    return signal.detach().to("cpu", torch.float64).numpy()


def tensor_to_numpy(tensor: torch.Tensor) -> tuple[np.ndarray, str]:
    """A tensor's values as numpy (on CPU) and the name of its torch dtype (``"float32"``).

    bfloat16 (which numpy lacks) comes back as float32; complex tensors raise InputError.
    """
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    values = tensor.detach().cpu()
    if values.is_complex():
        raise InputError(
            f"the tensor has complex dtype {dtype_name}; neurep fits real values: "
            "pass the real and imaginary parts (or abs/angle) as separate data"
        )
    if values.dtype == torch.bfloat16:
        values = values.float()
    return values.numpy(), dtype_name


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (``"float32"`` -> ``torch.float32``)."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dtype


def numpy_to_tensor(values: np.ndarray, dtype_name: str) -> torch.Tensor:
    """Numpy values as a CPU tensor of the torch dtype called ``dtype_name``."""
    target = torch_dtype(dtype_name)
    if target == torch.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(target)
    return torch.from_numpy(np.ascontiguousarray(values)).to(target)


def numpy_working_dtype(dtype_name: str) -> np.dtype:
    """The numpy dtype values are restored in before they become a tensor of ``dtype_name``."""
    return np.dtype(np.float32) if dtype_name == "bfloat16" else np.dtype(dtype_name)


def describe(obj: Any) -> str:
    """A short description of ``obj`` for error messages (type, shape and dtype if any)."""
    shape = getattr(obj, "shape", None)
    dtype = getattr(obj, "dtype", None)
    text = type(obj).__module__.split(".")[0] + "." + type(obj).__qualname__
    if shape is not None:
        text += f" of shape {tuple(shape)}"
    if dtype is not None:
        text += f" and dtype {dtype}"
    return text
