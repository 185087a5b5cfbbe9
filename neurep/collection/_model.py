"""The shared model of a collection: an LPNet encoder and a decoder fitted over many items.

Training is the fit loop's batched mode (:func:`neurep.fitting.loop.fit_signal` with
``batch_items``; the encoder standardises each item's code on its own), over the training
items stacked as one signal (N, C, *S). Afterwards the decoder is stored at int8 and every
item's embedding is an encoder pass, optionally refined with the decoder frozen, stored
as uint8 codes under one per-channel affine map fixed by the training embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurep.errors import FormatError
from neurep.fitting.loop import ADAM_BETAS, as_unit, fit_signal, pad_to
from neurep.fitting.presets import Plan, Preset, plan
from neurep.formats.quantize import dequantize_tensors, quantize_tensors
from neurep.models import build
from neurep.models.registry import ConfigurableModule

#: Headroom of the codes' range beyond the training embeddings' (per channel, each side):
#: new items' codes rarely fall outside, and those values are clipped.
CODE_RANGE_MARGIN = 0.25
#: Items encoded, refined or decoded at a time.
ITEMS_PER_PASS = 64
#: Storage precision of each network's weights: the decoder decodes every item (int8
#: costs at most a few hundredths of a dB), the encoder only embeds new ones.
WEIGHT_PRECISION = {"decoder": "int8", "encoder": "float16"}
#: Adam's rate when refining embeddings with the decoder frozen.
REFINE_LEARNING_RATE = 3e-2

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def collection_preset(
    embedding_channels: int,
    *,
    epochs: int,
    batch: int,
    learning_rate: float,
    projection: str = "conv",
) -> Preset:
    """The training preset: LPNet [s, 2, 2] (s the image rule's first stride, so a 64x64
    or 128x128 item has a 4x4 code), a full-width transposed-convolution decoder.

    LPNet-Conv by default: on crops of images it was not trained on, it embeds about 7 dB
    better than LPNet-S3K after the same training (RESULTS.md, "Collections")."""
    conv = projection == "conv"
    return Preset(
        "collection",
        steps=0,
        learning_rate=learning_rate,
        projection=projection,
        level_norm=not conv,
        state_norm=not conv,
        encoder_widths=(64, 64, embedding_channels),
        decoder_widths=(96, 64, 24),
        state_size=16,
        window_span=(0.08, 8.0),
        max_first_stride=8,
        first_stage_min_size=16,
        batch_items=batch,
        epochs=epochs,
        warmup_steps=50,
    )


@dataclass
class SharedModel:
    """Encoder, decoder and code map of a collection; every tensor on the CPU.

    Attributes:
        item_shape: (C, *S) of one item's signal.
        embedding_shape: (E, *s) of one item's embedding.
        scale, offset: (E,) float32: an embedding value is ``code * scale + offset``.
        padded_shape: the spatial size the encoder takes (items are padded to it).
    """

    encoder: ConfigurableModule
    decoder: ConfigurableModule
    item_shape: tuple[int, ...]
    embedding_shape: tuple[int, ...]
    scale: np.ndarray
    offset: np.ndarray
    padded_shape: tuple[int, ...]
    loss: str = "mse"
    quantization: dict[str, Any] = field(default_factory=dict)  # "decoder", "encoder"
    fit: dict[str, Any] = field(default_factory=dict)

    # -- embedding -----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, signal: torch.Tensor) -> torch.Tensor:
        """(n, C, *S) uint8 or float in [0, 1] -> (n, E, *s) float32, ITEMS_PER_PASS at a time."""
        parts = [
            self.encoder(pad_to(as_unit(signal[first : first + ITEMS_PER_PASS]), self.padded_shape))
            for first in range(0, signal.shape[0], ITEMS_PER_PASS)
        ]
        return torch.cat(parts)

    def refine(self, embedding: torch.Tensor, signal: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` Adam steps on each item's embedding against its signal (decoder frozen);
        (n, E, *s) -> (n, E, *s). Each item's loss is its own mean, so items do not trade."""
        if steps <= 0:
            return embedding
        self.decoder.requires_grad_(False)
        refined = []
        for first in range(0, signal.shape[0], ITEMS_PER_PASS):
            target = as_unit(signal[first : first + ITEMS_PER_PASS])
            code = embedding[first : first + ITEMS_PER_PASS].clone().requires_grad_(True)
            optimiser = torch.optim.Adam([code], lr=REFINE_LEARNING_RATE, betas=ADAM_BETAS)
            low, high = self.code_bounds()
            for _ in range(steps):
                output = self._crop(self.decoder(code))
                if self.loss == "bce":
                    error = F.binary_cross_entropy_with_logits(output, target, reduction="none")
                else:
                    error = (output - target) ** 2
                objective = error.flatten(1).mean(1).sum()
                optimiser.zero_grad(set_to_none=True)
                objective.backward()
                optimiser.step()
                with torch.no_grad():  # stay where the codes can follow
                    code.copy_(torch.maximum(torch.minimum(code, high), low))
            refined.append(code.detach())
        return torch.cat(refined)

    def code_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lowest and highest storable embedding values, shaped (E, 1, ..., 1)."""
        view = (-1,) + (1,) * (len(self.embedding_shape) - 1)
        scale = torch.from_numpy(self.scale).view(view)
        offset = torch.from_numpy(self.offset).view(view)
        return offset, offset + 255 * scale

    def quantize(self, embedding: torch.Tensor) -> np.ndarray:
        """(n, E, *s) float -> uint8 codes (values outside the code range are clipped)."""
        view = (1, -1) + (1,) * (len(self.embedding_shape) - 1)
        values = embedding.detach().numpy().astype(np.float64)
        codes = np.rint((values - self.offset.reshape(view)) / self.scale.reshape(view))
        return np.clip(codes, 0, 255).astype(np.uint8)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """uint8 codes (n, E, *s) -> float32 embeddings."""
        view = (1, -1) + (1,) * (codes.ndim - 2)
        scale = self.scale.reshape(view).astype(np.float32)
        return codes.astype(np.float32) * scale + self.offset.reshape(view).astype(np.float32)

    @torch.no_grad()
    def decode(self, embedding: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(n, E, *s) -> (n, C, *S) in [0, 1], as a datum's decode computes it."""
        embedding = torch.as_tensor(embedding, dtype=torch.float32)
        layout = _CHANNELS_LAST.get(embedding.dim())
        parts = []
        for first in range(0, embedding.shape[0], ITEMS_PER_PASS):
            part = embedding[first : first + ITEMS_PER_PASS]
            if layout is not None:
                part = part.contiguous(memory_format=layout)
            parts.append(self._crop(self.decoder(part)).contiguous())
        output = torch.cat(parts)
        return output.sigmoid() if self.loss == "bce" else output.clamp(0.0, 1.0)

    def _crop(self, output: torch.Tensor) -> torch.Tensor:
        return output[(..., *(slice(0, s) for s in self.item_shape[1:]))]

    # -- storage -------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``weights.safetensors`` holds: ``decoder.*`` and ``encoder.*``, as
        :meth:`store_weights` quantised them (with their ``__qparams__``)."""
        return {
            f"{part}.{name}": value
            for part, stored in self._stored.items()
            for name, value in stored.items()
        }

    def store_weights(self) -> None:
        """Quantise the weights once, the decoder at :data:`WEIGHT_PRECISION["decoder"]`
        and the encoder at ``["encoder"]``; both then compute what the file will."""
        self._stored: dict[str, dict[str, torch.Tensor]] = {}
        for part, module in (("decoder", self.decoder), ("encoder", self.encoder)):
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            stored, qinfo = quantize_tensors(state, WEIGHT_PRECISION[part])
            self._stored[part] = stored
            self.quantization[part] = qinfo
            module.load_state_dict(dequantize_tensors(stored, qinfo))


def train(
    signal: torch.Tensor,
    preset: Preset,
    *,
    loss: str,
    seed: int,
    progress: bool,
    device: str | torch.device | None,
) -> SharedModel:
    """Fit a shared model to ``signal`` (N, C, *S), the training items; the code map is set
    from their embeddings and the decoder stored at int8."""
    models: Plan = plan(preset, signal.shape[1], tuple(signal.shape[2:]), items=signal.shape[0])
    result = fit_signal(
        signal,
        models,
        steps=preset.steps_for(signal.shape[0]),
        seed=seed,
        loss=loss,
        progress=progress,
        device=device,
        description=f"neurep collection: shared model ({signal.shape[0]} items)",
    )
    embedding = result.embedding.numpy()  # (N, E, *s)
    axes = (0, *range(2, embedding.ndim))
    low, high = embedding.min(axis=axes), embedding.max(axis=axes)
    margin = CODE_RANGE_MARGIN * np.maximum(high - low, 1e-6)
    low, high = low - margin, high + margin
    model = SharedModel(
        encoder=result.encoder.eval(),
        decoder=result.decoder.eval(),
        item_shape=tuple(signal.shape[1:]),
        embedding_shape=tuple(embedding.shape[1:]),
        scale=((high - low) / 255).astype(np.float32),
        offset=low.astype(np.float32),
        padded_shape=models.padded_shape,
        loss=loss,
        fit={
            "steps": result.steps,
            "epochs": preset.epochs,
            "batch_items": preset.batch_items,
            "learning_rate": preset.learning_rate,
            "train_items": int(signal.shape[0]),
            "seed": seed,
            "wall_time_s": round(result.wall_time_s, 3),
            "final_training_psnr": round(float(np.mean(result.history[-20:])), 4)
            if result.history
            else None,
            "threads": torch.get_num_threads(),
        },
    )
    model.store_weights()
    return model


def from_stored(
    metadata: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
) -> SharedModel:
    """The shared model of a model file's metadata and tensors; FormatError if they do not
    fit together (names, shapes, non-finite values, sizes)."""
    try:
        encoder = build(metadata["encoder"]).eval()
        decoder = build(metadata["decoder"]).eval()
    except (KeyError, TypeError, ValueError) as error:
        raise FormatError(f"{source}: bad encoder or decoder description: {error}") from None
    parts: dict[str, dict[str, torch.Tensor]] = {"decoder": {}, "encoder": {}}
    for name, value in tensors.items():
        part, _, rest = name.partition(".")
        if part not in parts or not rest:
            raise FormatError(f"{source}: unexpected tensor {name!r} in the weights")
        parts[part][rest] = value
    quantization = metadata["weights"]["quantization"]
    for module, what in ((decoder, "decoder"), (encoder, "encoder")):
        try:
            state = dequantize_tensors(parts[what], quantization.get(what))
        except FormatError as error:
            raise FormatError(f"{source}: the {what} weights: {error}") from None
        expected = module.state_dict()
        if set(state) != set(expected) or any(
            tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()
        ):
            raise FormatError(f"{source}: the {what} weights do not match its description")
        if not all(torch.isfinite(v.float()).all() for v in state.values()):
            raise FormatError(f"{source}: the {what} weights hold NaN or infinity")
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    item_shape = tuple(metadata["signal"]["item_shape"])
    embedding = metadata["embedding"]
    embedding_shape = tuple(embedding["item_shape"])
    scale = np.asarray(embedding["scale"], dtype=np.float64)
    offset = np.asarray(embedding["offset"], dtype=np.float64)
    channels = embedding_shape[0]
    if scale.shape != (channels,) or offset.shape != (channels,):
        raise FormatError(f"{source}: the code map needs {channels} scales and offsets")
    if not (np.isfinite(scale).all() and np.isfinite(offset).all() and (scale > 0).all()):
        raise FormatError(f"{source}: the code map's scales and offsets must be finite, scale > 0")
    _check_shapes(metadata, item_shape, embedding_shape, source)
    stride = math.prod(int(s) for s in metadata["encoder"]["configuration"]["strides"])
    model = SharedModel(
        encoder=encoder,
        decoder=decoder,
        item_shape=item_shape,
        embedding_shape=embedding_shape,
        scale=scale.astype(np.float32),
        offset=offset.astype(np.float32),
        padded_shape=tuple(math.ceil(s / stride) * stride for s in item_shape[1:]),
        loss=metadata["signal"]["loss"],
        quantization=dict(quantization),
        fit=metadata.get("fit", {}),
    )
    model._stored = parts
    return model


def _check_shapes(
    metadata: dict[str, Any], item_shape: tuple, embedding_shape: tuple, source: str
) -> None:
    """The decoder must turn one item's embedding into exactly one item's signal, and
    the encoder the signal into the embedding (checked on shapes, before any decode)."""
    from neurep.datum import MAX_DECODED_ELEMENTS_PER_ITEM

    try:
        decoder = metadata["decoder"]["configuration"]
        encoder = metadata["encoder"]["configuration"]
        decoder_stride = math.prod(int(s) for s in decoder["strides"])
        encoder_stride = math.prod(int(s) for s in encoder["strides"])
        ndim = int(decoder["ndim"])
        ok = (
            len(item_shape) == ndim + 1 == len(embedding_shape)
            and int(encoder["ndim"]) == ndim
            and int(decoder["in_channels"]) == embedding_shape[0]
            and int(decoder["out_channels"]) == item_shape[0] == int(encoder["in_channels"])
            and decoder_stride == encoder_stride
            and all(
                (latent - 1) * decoder_stride < size <= latent * decoder_stride
                for latent, size in zip(embedding_shape[1:], item_shape[1:], strict=True)
            )
        )
    except (KeyError, TypeError, ValueError) as error:
        raise FormatError(f"{source}: incomplete model description: {error}") from None
    if not ok:
        raise FormatError(
            f"{source}: inconsistent model: item {list(item_shape)}, embedding "
            f"{list(embedding_shape)}, encoder and decoder do not agree"
        )
    if math.prod(item_shape) > MAX_DECODED_ELEMENTS_PER_ITEM:
        raise FormatError(f"{source}: one item would decode to {math.prod(item_shape)} values")
