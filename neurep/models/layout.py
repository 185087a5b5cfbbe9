"""A decoder's parameters as one flat vector, and what makes two decoders stackable.

Two decoders share an *architecture* when their ``{"name", "configuration"}`` descriptions
are equal (:func:`architecture_key`); then their state dicts have the same names, dtypes
and shapes, in the same order (:func:`state_layout`), and their parameters can be laid end
to end in one float32 vector of the same length P (:func:`parameter_layout`): tensor by
tensor in state-dict order, each flattened in C order. Weight-space learning reads these
vectors as features; batched decoding stacks them to ``(N, P)`` and views each tensor back
out (:func:`unflatten`).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, NamedTuple

import numpy as np
import torch

from neurep.formats import DTYPE_NAMES
from neurep.models.registry import build

__all__ = ["ParameterSlot", "architecture_key", "flatten", "parameter_layout", "state_layout"]


class ParameterSlot(NamedTuple):
    """Where one tensor of a decoder's state dict lies in its flat parameter vector."""

    name: str
    shape: tuple[int, ...]
    offset: int  # first element in the vector
    size: int  # prod(shape)


def architecture_key(description: dict[str, Any]) -> str:
    """The decoder description as canonical JSON: equal keys, stackable decoders."""
    return json.dumps(description, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _described(key: str) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    with torch.device("meta"):  # shapes only: nothing is allocated
        module = build(json.loads(key))
    return tuple(
        (name, DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
        for name, tensor in module.state_dict().items()
    )


def state_layout(description: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype name, shape) of the state dict ``build(description)`` has, in order.

    Built once per architecture (cached). Raises what :func:`~neurep.models.build` raises
    for a description it cannot build (ValueError, KeyError, TypeError).
    """
    return {
        name: (dtype, shape) for name, dtype, shape in _described(architecture_key(description))
    }


def parameter_layout(description: dict[str, Any]) -> list[ParameterSlot]:
    """The flat vector's layout: one :class:`ParameterSlot` per state-dict tensor, in order;
    the vector's length P is ``slots[-1].offset + slots[-1].size``."""
    slots, offset = [], 0
    for name, (_, shape) in state_layout(description).items():
        size = math.prod(shape)
        slots.append(ParameterSlot(name, shape, offset, size))
        offset += size
    return slots


def flatten(state: dict[str, torch.Tensor], slots: list[ParameterSlot]) -> np.ndarray:
    """A state dict laid out by ``slots``: (P,) float32."""
    if not slots:
        return np.zeros(0, np.float32)
    parts = [state[slot.name].detach().reshape(-1) for slot in slots]
    return torch.cat(parts).to(device="cpu", dtype=torch.float32).numpy()


def unflatten(vectors: torch.Tensor, slots: list[ParameterSlot]) -> dict[str, torch.Tensor]:
    """(N, P) stacked vectors -> name -> (N, *shape) views, for ``functional_call``."""
    return {
        slot.name: vectors[:, slot.offset : slot.offset + slot.size].reshape(-1, *slot.shape)
        for slot in slots
    }
