"""Decoding many data at once: one vmapped forward per group of stackable decoders.

Decoding item by item pays, per item, a decoder build and a forward of a dozen small ops.
:func:`decode_batch` groups items whose decoders share an architecture (equal
``metadata["decoder"]``; :mod:`neurep.models.layout`) and whose embeddings share a shape,
stacks their parameter vectors ``(N, P)`` and embeddings ``(N, B, E, *s)``, and runs one
``torch.vmap`` of ``torch.func.functional_call`` over a shared parameter-less template
(:func:`~neurep.models.vmapped.vmappable_template`), so each op is dispatched once a group.
The result equals :meth:`NeuralDatum.as_tensor <neurep.datum.NeuralDatum.as_tensor>` up to
float rounding (the template's matmuls sum in another order).

A data-loader worker turns a datum into an :class:`EncodedItem` (:func:`encode_item`):
plain numpy arrays, which pickle by value into the main process. There the batch can be
decoded on the training device, so that workers only read and parse files.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from neurep.errors import FormatError
from neurep.models.layout import architecture_key, parameter_layout, unflatten
from neurep.models.vmapped import vmappable_template

__all__ = ["EncodedItem", "decode_batch", "encode_item", "stack_or_list"]

#: Output values one vmapped forward produces at most (64 MB of float32), so that a batch
#: of large items is decoded a few at a time.
MAX_BATCH_OUTPUT_ELEMENTS = 1 << 24


@dataclass(frozen=True, eq=False)
class EncodedItem:
    """One datum read, checked and dequantised: what :func:`decode_batch` decodes.

    Made by :func:`encode_item` (not by hand: the file checks happen there).

    Attributes:
        name: the item's name in its dataset (for error messages).
        architecture: the decoder description as canonical JSON; equal strings stack.
        parameters: (P,) float32, the decoder's parameters (``NeuralDatum.parameters_vector``).
        embedding: (B, E, *s) float32.
        signal_shape: (B, C, *S), what the decode is cropped to.
        loss: "mse" (values clamped to [0, 1]) or "bce" (occupancy: a sigmoid).
        adapter: the datum's modality adapter, which gives the tensor layout
            (``signal_as_tensor``); it pickles as its small configuration.
    """

    name: str
    architecture: str
    parameters: np.ndarray
    embedding: np.ndarray
    signal_shape: tuple[int, ...]
    loss: str
    adapter: Any


def encode_item(datum, name: str | None = None) -> EncodedItem:
    """``datum`` (a :class:`~neurep.datum.NeuralDatum`) as an :class:`EncodedItem`: its
    weights dequantised and checked, its embedding read (FormatError if not finite)."""
    embedding = np.ascontiguousarray(datum.embedding(), dtype=np.float32)
    label = name or datum._source
    if not np.isfinite(embedding).all():
        raise FormatError(f"{label}: the embedding holds NaN or infinity")
    return EncodedItem(
        name=label,
        architecture=architecture_key(datum.metadata["decoder"]),
        parameters=datum.parameters_vector(),
        embedding=embedding,
        signal_shape=tuple(int(v) for v in datum.metadata["signal"]["shape"]),
        loss=datum.metadata["signal"].get("loss", "mse"),
        adapter=datum.adapter,
    )


@functools.lru_cache(maxsize=64)
def _template(architecture: str) -> torch.nn.Module:
    return vmappable_template(json.loads(architecture))


def _group_key(item: EncodedItem) -> tuple:
    return (item.architecture, item.embedding.shape, item.signal_shape, item.loss)


@torch.no_grad()
def decode_batch(
    items: Sequence[EncodedItem], *, device: str | torch.device | None = None
) -> list[torch.Tensor]:
    """Decode ``items`` together: one float32 tensor each, in their order, in the layout of
    :meth:`NeuralDatum.as_tensor <neurep.datum.NeuralDatum.as_tensor>`, on ``device``
    (default: the CPU, in the calling process's torch threads).

    Items are decoded in groups of equal architecture, embedding shape and signal shape,
    each group in vmapped forwards of at most :data:`MAX_BATCH_OUTPUT_ELEMENTS` values.
    """
    device = torch.device(device or "cpu")
    groups: dict[tuple, list[int]] = {}
    for position, item in enumerate(items):
        if not isinstance(item, EncodedItem):
            raise TypeError(f"decode_batch takes EncodedItem, not {type(item).__name__}")
        groups.setdefault(_group_key(item), []).append(position)
    decoded: list[torch.Tensor | None] = [None] * len(items)
    for (architecture, _, signal_shape, loss), positions in groups.items():
        per_item = max(1, math.prod(signal_shape))
        step = max(1, MAX_BATCH_OUTPUT_ELEMENTS // per_item)
        for first in range(0, len(positions), step):
            chosen = positions[first : first + step]
            signals = _decode_group(
                [items[p] for p in chosen], architecture, signal_shape, loss, device
            )
            for position, signal in zip(chosen, signals, strict=True):
                decoded[position] = items[position].adapter.signal_as_tensor(signal)
    return decoded  # type: ignore[return-value]


def _decode_group(
    items: list[EncodedItem],
    architecture: str,
    signal_shape: tuple[int, ...],
    loss: str,
    device: torch.device,
) -> torch.Tensor:
    """(N, B, C, *S): the signals of items that share a decoder architecture and shapes."""
    slots = parameter_layout(json.loads(architecture))
    vectors = torch.from_numpy(np.stack([item.parameters for item in items])).to(device)
    embeddings = torch.from_numpy(np.stack([item.embedding for item in items])).to(device)
    template = _template(architecture)

    def one(parameters: dict[str, torch.Tensor], embedding: torch.Tensor) -> torch.Tensor:
        return functional_call(template, parameters, (embedding,))

    try:
        output = torch.vmap(one)(unflatten(vectors, slots), embeddings)
    except RuntimeError as error:  # shapes the file checks did not foresee
        names = ", ".join(item.name for item in items[:3])
        raise FormatError(f"{names}: the decoder failed on this batch: {error}") from None
    output = output[(..., *(slice(0, s) for s in signal_shape[2:]))]
    return output.sigmoid() if loss == "bce" else output.clamp(0.0, 1.0)


def stack_or_list(values: Sequence[Any]) -> torch.Tensor | list[Any]:
    """Tensors of one shape stacked to ``(N, ...)``; anything else as a list.

    Stacked by ``default_collate``, which in a ``DataLoader`` worker writes the batch
    straight into shared memory (a plain stack would be copied there once more)."""
    if values and all(isinstance(v, torch.Tensor) for v in values):
        shape = values[0].shape
        if all(v.shape == shape for v in values):
            return torch.utils.data.default_collate(list(values))
    return list(values)
