"""``NeuralDatum``: a decoder, its embedding(s) and the metadata that restores the original.

A datum comes from :func:`neurep.fit` (everything in memory) or from :func:`neurep.load`
(lazy: the decoder's weights are read on the first decode, the embedding rows as needed).
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import numpy as np
import torch

from neurep.errors import FormatError
from neurep.formats import (
    compact_array,
    compact_tensors,
    dequantize_array,
    dequantize_tensors,
    open_nrep,
    quantize_array,
    quantize_tensors,
    write_nrep,
)
from neurep.formats._compact_vector import compact_vector
from neurep.formats._entropy import (
    WEIGHT_CODECS,
    decode_codes,
    encode_codes,
    has_codec,
    recode,
)
from neurep.item_selection import Items, contiguous_runs, item_indices, plain_integer
from neurep.metadata import (
    EMBEDDING_ARRAY,
    at_precision,
    with_quantization,
)
from neurep.modalities import adapter_from_config
from neurep.models import build
from neurep.models.layout import ParameterSlot, flatten, parameter_layout, state_layout
from neurep.models.registry import ConfigurableModule

__all__ = ["NeuralDatum"]
#: The most values one decoded item may have (a 16k x 16k RGBA image, a 1024^3 volume).
MAX_DECODED_ELEMENTS_PER_ITEM = 1 << 30
#: Output values decoded at once (a batch of video frames: 12 at 640x360 RGB), so that a
#: long clip's decode never holds its float32 signal whole.
DECODE_BATCH_ELEMENTS = 1 << 23

#: Memory layout the decoder runs in, by embedding rank (4: 2-D signals, 5: 3-D).
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


class NeuralDatum:
    """One datum in neural form. Use :meth:`decode` to get the original kind back.

    Attributes:
        metadata: the file's metadata (see docs/FORMAT.md); ``metadata["quality"]`` holds the
            measured PSNR / MS-SSIM of the decode against the original.
    """

    def __init__(
        self,
        metadata: dict[str, Any],
        *,
        decoder: ConfigurableModule | None = None,
        embedding: np.ndarray | None = None,
        reader=None,
    ) -> None:
        self.metadata = metadata
        self._decoder = decoder
        self._embedding = embedding  # (B, E, *s) float32, dequantised
        self._reader = reader
        self._adapter = None
        self._stored: tuple[dict[str, torch.Tensor], np.ndarray] | None = None
        #: name -> factor >= 1 (one, or one per quantisation channel): coarser quantisation
        #: steps for those weights (set before :meth:`freeze_storage`; neurep.fitting.steps)
        self.step_scales: dict[str, float | np.ndarray] | None = None

    # -- construction from a file -----------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> NeuralDatum:
        """Open ``path``; only the metadata is read now (weights on the first decode)."""
        return cls._from_reader(open_nrep(path))

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, name: str | None = None
    ) -> NeuralDatum:
        """A datum from a whole ``.nrep`` file's bytes (a pack member), checked as a file is;
        error messages call it ``name``."""
        return cls._from_reader(open_nrep(data, name=name))

    @classmethod
    def _from_reader(cls, reader, *, decode_checks: bool = True) -> NeuralDatum:
        """A datum of an open reader (which validated the file). ``decode_checks=False``
        skips what only decoding needs (signal, embedding and decoder agree; the modality
        restores that signal): for reading the embedding and nothing else."""
        try:
            datum = cls(reader.metadata, reader=reader)
            if decode_checks:
                datum._check_embedding_description()
                datum._check_modality_agrees()
        except BaseException:
            reader.close()
            raise
        return datum

    @property
    def item_axis(self) -> bool:
        """Whether the modality keeps its item axis in tensors (video); from its registered
        class, without building the adapter."""
        from neurep.modalities.registry import get

        if self._adapter is not None:
            return self._adapter.item_axis
        try:
            return get(self.metadata["modality"]["name"]).item_axis
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{self._source}: bad modality description: {error}") from None

    def _check_modality_agrees(self) -> None:
        """The modality's configuration must restore from the signal the file describes.

        A modality this neurep cannot build is left for :meth:`decode` to report, so that
        such a file's metadata still loads."""
        try:
            expected = self.adapter.signal_shape()
        except FormatError:
            return
        stored = tuple(self.metadata["signal"]["shape"])
        if expected is not None and tuple(expected) != stored:
            raise FormatError(
                f"{self._source}: inconsistent metadata: the {self.adapter.name} modality "
                f"restores from a signal of shape {list(expected)}, the file's is {list(stored)}"
            )

    def _check_embedding_description(self) -> None:
        """Check that signal, embedding and decoder agree, before anything is allocated.

        A file's metadata is untrusted: the decode must not be able to ask for an absurd
        output, and the decoder must consume exactly the embedding the file holds.
        """
        try:
            embedding_shape = [plain_integer(v) for v in self.metadata["embedding"]["shape"]]
            signal_shape = [plain_integer(v) for v in self.metadata["signal"]["shape"]]
            decoder = self.metadata["decoder"]["configuration"]
            in_channels = plain_integer(decoder["in_channels"])
            out_channels = plain_integer(decoder["out_channels"])
            total_stride = math.prod(plain_integer(s) for s in decoder["strides"])
            ndim = plain_integer(decoder["ndim"])
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(
                f"{self._source}: incomplete decoder/signal metadata: {error}"
            ) from None
        problems = []
        if len(embedding_shape) != len(signal_shape) or len(signal_shape) != ndim + 2:
            problems.append(f"embedding {embedding_shape} and signal {signal_shape} ranks differ")
        elif embedding_shape[0] != signal_shape[0]:
            problems.append("embedding and signal have different item counts")
        elif embedding_shape[1] != in_channels or signal_shape[1] != out_channels:
            problems.append("decoder channels do not match the embedding and the signal")
        else:
            for latent, size in zip(embedding_shape[2:], signal_shape[2:], strict=True):
                if not (latent - 1) * total_stride < size <= latent * total_stride:
                    problems.append(
                        f"signal size {size} is not what a latent of {latent} decodes to "
                        f"(stride {total_stride})"
                    )
            per_item = out_channels * math.prod(s * total_stride for s in embedding_shape[2:])
            if per_item > MAX_DECODED_ELEMENTS_PER_ITEM:
                problems.append(f"one item would decode to {per_item} values")
        if problems:
            raise FormatError(f"{self._source}: inconsistent metadata: {'; '.join(problems)}")

    @property
    def _source(self) -> str:
        return str(getattr(self._reader, "name", "<in memory>"))

    # -- parts ------------------------------------------------------------------------------
    @property
    def adapter(self):
        """The modality adapter that restores the user's kind (built from the metadata)."""
        if self._adapter is None:
            try:
                self._adapter = adapter_from_config(self.metadata["modality"])
            except (KeyError, TypeError, ValueError) as error:
                raise FormatError(f"{self._source}: bad modality description: {error}") from None
        return self._adapter

    @property
    def decoder(self) -> ConfigurableModule:
        """The decoder network (reads and checks the weights on first use)."""
        if self._decoder is None:
            self._decoder = self._load_decoder()
        return self._decoder

    def _load_decoder(self) -> ConfigurableModule:
        weights = self._read_weights()  # first: it names what is wrong with the description
        decoder = build(self.metadata["decoder"])
        decoder.load_state_dict(weights)
        return decoder.eval()

    def _read_weights(self) -> dict[str, torch.Tensor]:
        """The file's decoder weights, dequantised to float32 and checked against the
        decoder configuration: names, shapes, finite values (FormatError otherwise)."""
        vector, weights = self._dequantised()
        if weights is not None:
            return weights
        flat = torch.from_numpy(vector)
        return {
            slot.name: flat[slot.offset : slot.offset + slot.size].view(slot.shape)
            for slot in self.parameter_layout()
        }

    def _dequantised(self) -> tuple[np.ndarray | None, dict[str, torch.Tensor] | None]:
        """The file's weights, checked: the flat (P,) vector for the default layouts (one
        pass, :mod:`neurep.formats._compact_vector`), else the state dict tensor by tensor."""
        described, stored, qinfo = self._stored_weights()
        vector = compact_vector(stored, qinfo, described)
        if vector is not None:
            return vector, None
        return None, self._checked_weights(dequantize_tensors(stored, qinfo, described), described)

    def _checked_weights(
        self, weights: dict[str, torch.Tensor], described: dict
    ) -> dict[str, torch.Tensor]:
        expected = {k: shape for k, (_, shape) in described.items()}
        if set(weights) != set(expected):
            missing, extra = set(expected) - set(weights), set(weights) - set(expected)
            raise FormatError(
                f"{self._source}: weights do not match the decoder configuration "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]})"
            )
        for name, tensor in weights.items():
            if tuple(tensor.shape) != expected[name]:
                raise FormatError(
                    f"{self._source}: weight {name!r} has shape {tuple(tensor.shape)}, the "
                    f"decoder configuration needs {expected[name]}"
                )
        floating = [t for t in weights.values() if t.is_floating_point()]
        if floating and not torch.isfinite(torch.cat([t.reshape(-1) for t in floating])).all():
            name = next(n for n, t in weights.items() if not torch.isfinite(t).all())
            raise FormatError(f"{self._source}: weight {name!r} holds NaN or infinity")
        return weights

    def _stored_weights(self) -> tuple[dict, dict[str, torch.Tensor], Any]:
        """(the decoder's state-dict layout, the stored tensors, their quantisation info)."""
        try:
            described = state_layout(self.metadata["decoder"])
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{self._source}: cannot build the decoder: {error}") from None
        stored = self._reader.read_tensors()
        qinfo = self.metadata["weights"].get("quantization")
        if has_codec(qinfo):
            stored, qinfo = decode_codes(stored, qinfo, described, self._source)
        return described, stored, qinfo

    def parameter_layout(self) -> list[ParameterSlot]:
        """Where each decoder tensor lies in :meth:`parameters_vector`: (name, shape,
        offset, size) in state-dict order (see :mod:`neurep.models.layout`)."""
        try:
            return parameter_layout(self.metadata["decoder"])
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{self._source}: cannot build the decoder: {error}") from None

    def parameters_vector(self) -> np.ndarray:
        """The decoder's parameters as one (P,) float32 vector, laid out by
        :meth:`parameter_layout`: the same P and order for every datum whose
        ``metadata["decoder"]`` is equal, so such vectors stack into weight-space features.
        A file's weights are dequantised without building the decoder."""
        if self._decoder is None and self._reader is not None:
            vector, state = self._dequantised()
            if vector is not None:
                return vector
        else:
            state = self.decoder.state_dict()
        return flatten(state, self.parameter_layout())

    def embedding(self, items: Items = None) -> np.ndarray:
        """The embedding rows ``items`` (all by default; see :meth:`decode`): (B', E, *s)
        float32. A file's rows are read chunk by chunk: only the chunks of those items."""
        if self._embedding is not None:
            if items is None:
                return self._embedding
            return self._embedding[item_indices(items, self.num_items)]
        qinfo = self.metadata["embedding"].get("quantization")
        # Codes quantised per channel (format 1.1) dequantise row by row; a 1.0 record
        # describes the whole array, which is then read whole.
        by_rows = qinfo is None or (
            isinstance(qinfo, dict) and qinfo.get("version") == 2 and qinfo.get("axis", 1) != 0
        )
        if items is None or not by_rows:
            codes = self._reader.read_array(EMBEDDING_ARRAY, slice(None))
            values = codes if qinfo is None else dequantize_array(codes, qinfo)
            return values if items is None else values[item_indices(items, self.num_items)]
        indices = item_indices(items, self.num_items)
        runs = [self._reader.read_array(EMBEDDING_ARRAY, run) for run in contiguous_runs(indices)]
        codes = np.concatenate(runs) if len(runs) != 1 else runs[0]
        return codes if qinfo is None else dequantize_array(codes, qinfo)

    @property
    def num_items(self) -> int:
        """B: 1 for an image or array, the frame count for a video."""
        return int(self.metadata["signal"]["shape"][0])

    # -- decoding ---------------------------------------------------------------------------
    @torch.no_grad()
    def decode_signal(self, items: Items = None) -> torch.Tensor:
        """The decoder's output for ``items``, cropped to the signal: (B', C, *S) float32.

        Values are in [0, 1] (clamped; occupancy logits go through a sigmoid). Items are
        decoded :data:`DECODE_BATCH_ELEMENTS` output values at a time.
        """
        embedding = torch.from_numpy(np.ascontiguousarray(self.embedding(items)))
        if not torch.isfinite(embedding).all():
            raise FormatError(f"{self._source}: the embedding holds NaN or infinity")
        spatial = tuple(self.metadata["signal"]["shape"][2:])
        per_batch = self._items_per_batch()
        parts = [
            self._decode_rows(embedding[first : first + per_batch], spatial)
            for first in range(0, max(1, embedding.shape[0]), per_batch)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _items_per_batch(self) -> int:
        signal = self.metadata["signal"]["shape"]
        per_item = max(1, math.prod(int(v) for v in signal[1:]))
        return max(1, DECODE_BATCH_ELEMENTS // per_item)

    def _decode_rows(self, embedding: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
        # Channels-last runs the transposed and depthwise convolutions about 2x faster on
        # CPU (RESULTS.md, "Video"); the decoder is put back in the default layout after.
        layout = _CHANNELS_LAST.get(embedding.dim())
        decoder = self.decoder
        try:
            if layout is not None:
                decoder.to(memory_format=layout)
                embedding = embedding.contiguous(memory_format=layout)
            output = decoder(embedding).contiguous()
        except RuntimeError as error:  # shapes the checks above did not foresee
            raise FormatError(f"{self._source}: the decoder failed on this file: {error}") from None
        finally:
            if layout is not None:
                decoder.to(memory_format=torch.contiguous_format)
        output = output[(..., *(slice(0, s) for s in spatial))]
        if self.metadata["signal"].get("loss") == "bce":
            return output.sigmoid()
        return output.clamp(0.0, 1.0)

    def as_tensor(self, items: Items = None) -> torch.Tensor:
        """The decode as a float32 tensor in the modality's layout for ML pipelines: images
        ``C x H x W`` and video ``T x C x H x W`` in [0, 1], shapes' occupancy probabilities
        ``1 x D x H x W``, arrays ``1 x *S`` in their own units (see
        :meth:`~neurep.modalities.base.ModalityAdapter.signal_as_tensor`)."""
        return self.adapter.signal_as_tensor(self.decode_signal(items))

    def decode(self, items: Items = None, **options: Any):
        """Decode to the kind the datum was fitted from: same shape, dtype and value range.

        ``items`` picks items (video frames) to decode, and only their embedding is read:
        an index (negative counts from the end), a slice, or a sequence of indices.
        ``decode(items)`` equals the same rows of ``decode()`` exactly; an index gives what
        ``decode()[index]`` gives.

        ``options`` are the modality's decode options (shapes: ``kind="mesh" | "points" |
        "voxels"``); others are a TypeError naming those it takes.
        """
        adapter = self.adapter
        unknown = sorted(set(options) - set(adapter.decode_options))
        if unknown:
            takes = ", ".join(adapter.decode_options) or "none"
            raise TypeError(
                f"decoding a {adapter.name} datum takes no option "
                f"{', '.join(map(repr, unknown))} (its options: {takes})"
            )
        if items is None or self.num_items <= self._items_per_batch():
            decoded = adapter.from_signal(self.decode_signal(items), **options)
        else:  # a long clip: convert each batch to the user's dtype before the next
            indices = item_indices(items, self.num_items)
            step = self._items_per_batch()
            decoded = adapter.concatenate(
                [
                    adapter.from_signal(
                        self.decode_signal(indices[first : first + step]), **options
                    )
                    for first in range(0, max(1, len(indices)), step)
                ]
            )
        if isinstance(items, int | np.integer):
            return self.adapter.single_item(decoded)
        return decoded

    # -- storage ---------------------------------------------------------------------------
    def freeze_storage(self) -> None:
        """Quantise weights and embedding at the metadata's precisions, once.

        Afterwards the in-memory decoder and embedding hold the dequantised values, so this
        datum decodes exactly as the file :meth:`save` writes.
        """
        if self._stored is not None:
            return
        precision = self.metadata["weights"].get("precision", "float32")
        state = self.decoder.state_dict()
        stored, qinfo = quantize_tensors(state, precision, self.step_scales)
        embedding_precision = self.metadata["embedding"].get("precision", "float32")
        # Per embedding channel (axis 1), never per item: any subset of items shares them.
        codes, embedding_qinfo = quantize_array(self.embedding(), embedding_precision, axis=1)
        self.decoder.load_state_dict(dequantize_tensors(stored, qinfo))
        self._embedding = dequantize_array(codes, embedding_qinfo)
        # stored in format 1.1's compact layout: what the decoder configuration implies is not
        stored, qinfo = compact_tensors(stored, qinfo, list(state))
        # formats 1.2-1.3: the affine codes entropy-coded (save(weights_codec="raw") undoes it)
        stored, qinfo = encode_codes(stored, qinfo, state_layout(self.metadata["decoder"]))
        self.metadata = with_quantization(
            self.metadata, qinfo, str(codes.dtype), compact_array(embedding_qinfo)
        )
        self._stored = (stored, codes)

    def with_precision(self, precision: str, embedding_precision: str | None = None) -> NeuralDatum:
        """A copy stored at another precision, quantised from this datum's float32 values.

        Only a float32 datum (fresh from :func:`neurep.fit` or loaded from a float32 file)
        can be requantised without compounding errors; ``metadata["quality"]`` is copied, not
        re-measured (the original object is not known here).
        """
        if self.metadata["weights"].get("precision", "float32") != "float32":
            raise ValueError("requantise from a float32 datum, not from quantised weights")
        metadata = at_precision(self.metadata, precision, embedding_precision)
        datum = NeuralDatum(
            metadata, decoder=copy.deepcopy(self.decoder), embedding=np.array(self.embedding())
        )
        datum.freeze_storage()
        return datum

    def save(self, path: str | os.PathLike, *, weights_codec: str | None = None) -> int:
        """Write the datum to ``path`` atomically; returns the file's size in bytes.

        weights_codec: ``"ans"`` entropy-codes the integer weight codes (the default for a
            fitted datum; format 1.3; a file coded already keeps its own coding),
            ``"ans-1.2"`` codes them as format 1.2 did (for readers of 1.2; a few percent
            larger), ``"raw"`` stores them as plain safetensors tensors; None keeps what the
            datum holds (a loaded file's own codec). Either way the decoded values are the same.
        """
        if weights_codec is not None and weights_codec not in WEIGHT_CODECS:
            raise ValueError(
                f"weights_codec must be one of {', '.join(WEIGHT_CODECS)} or None, "
                f"not {weights_codec!r}"
            )
        if self._stored is None:
            if self._reader is None:
                self.freeze_storage()
            else:  # loaded from a file: write back what it holds, without requantising
                self._stored = (
                    self._reader.read_tensors(),
                    self._reader.read_array(EMBEDDING_ARRAY, slice(None)),
                )
        stored, codes = self._stored
        metadata = self.metadata
        qinfo = metadata["weights"].get("quantization")
        if weights_codec is not None and isinstance(qinfo, dict) and qinfo.get("version") == 2:
            described = state_layout(metadata["decoder"])
            stored, qinfo = recode(stored, qinfo, described, weights_codec, self._source)
            metadata = {**metadata, "weights": {**metadata["weights"], "quantization": qinfo}}
        return write_nrep(path, metadata=metadata, arrays={EMBEDDING_ARRAY: codes}, tensors=stored)

    def __repr__(self) -> str:
        modality = self.metadata.get("modality", {}).get("name", "?")
        psnr = (self.metadata.get("quality") or {}).get("psnr")
        quality = f", psnr={psnr:.2f} dB" if isinstance(psnr, int | float) else ""
        return (
            f"NeuralDatum(modality={modality!r}, decoder={self.metadata['decoder']['name']!r}, "
            f"embedding={tuple(self.metadata['embedding']['shape'])}{quality})"
        )
