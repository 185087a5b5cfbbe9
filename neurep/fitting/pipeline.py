"""From a user's object to a stored, measured :class:`NeuralDatum`: the one fit pipeline.

:func:`neurep.fit` is a thin verb over :func:`fit_datum`; batch conversion and new
modalities call it too, so presets, rate control, storage and quality are handled once:

1. the adapter's profile specialises the preset (:meth:`Preset.for_profile`);
2. a byte budget picks the decoder's width and precision (:mod:`neurep.fitting.rate`);
3. the loop fits encoder and decoder (:func:`fit_signal`); under a budget, the weights are
   then rounded a tensor at a time and the rest refitted (:mod:`neurep.fitting.refit`);
4. the result is quantised at the storage precision and its decode measured against the
   original, so the returned datum decodes exactly as its saved file will.

:func:`fit_datums` does the same for several small items of one shape at once (one stacked
fit, :func:`~neurep.fitting.stacked.fit_signals_stacked`), each still its own datum.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from neurep.datum import NeuralDatum
from neurep.fitting import rate
from neurep.fitting.loop import FitResult, fit_signal
from neurep.fitting.presets import Plan, Preset, plan
from neurep.fitting.refit import round_and_refit
from neurep.fitting.stacked import fit_signals_stacked
from neurep.fitting.steps import StepScales, choose_steps, output_sensitivity
from neurep.metadata import FitRecord, datum_metadata, with_quality
from neurep.modalities import ModalityAdapter

__all__ = [
    "DEFAULT_PRECISION",
    "PSNR_MARGIN_FOR_INT8",
    "StorageTarget",
    "fit_datum",
    "fit_datums",
]

#: Weights are stored at 8 bits unless asked otherwise: at most 0.14 dB below float32 on
#: Kodak, for a file 3.8x smaller (RESULTS.md, "Storage").
DEFAULT_PRECISION = "int8"
#: How much higher than a ``psnr=`` target the fit aims, to absorb int8 storage (<= 0.14 dB).
PSNR_MARGIN_FOR_INT8 = 0.2


@dataclass(frozen=True)
class StorageTarget:
    """What the stored datum must meet.

    precision: weight storage precision (None: int8, or chosen by the budget).
    embedding_precision: the embedding's (None: int8 beside integer weights, else theirs).
    max_bytes: the saved file's size limit, or None.
    psnr: quality target in dB: fitting stops once the training PSNR is this plus
        :data:`PSNR_MARGIN_FOR_INT8`.
    """

    precision: str | None = None
    embedding_precision: str | None = None
    max_bytes: int | None = None
    psnr: float | None = None


def fit_datum(
    obj: Any,
    adapter: ModalityAdapter,
    signal: torch.Tensor,
    preset: Preset,
    target: StorageTarget = StorageTarget(),
    *,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> NeuralDatum:
    """Fit, store and measure a datum for ``obj``, read by ``adapter`` as ``signal``.

    Args:
        obj: the user's object (quality is measured against it).
        adapter, signal: ``adapter_cls.read(obj)``; signal (B, C, *S), float in [0, 1]
            or uint8 (value / 255).
        preset: the preset before the adapter's profile is applied.
        target: precision, size and quality the stored datum must meet.
        seed, progress, device: as :func:`neurep.fit`.
    """
    precision, max_bytes, psnr = target.precision, target.max_bytes, target.psnr
    preset = preset.for_profile(adapter.preset_profile)
    target_psnr = None
    if psnr is not None:
        target_psnr = psnr + PSNR_MARGIN_FOR_INT8
        precision = precision or DEFAULT_PRECISION
    if max_bytes is not None:  # the budget sizes the decoder, not the capacity rule
        preset = replace(preset, parameters_per_sample=None)
        ladder = (precision,) if precision else rate.PRECISION_LADDER
        candidate = rate.choose_for_budget(
            preset, adapter, signal, max_bytes, ladder, target.embedding_precision
        )
        models, precision = candidate.plan, candidate.precision
    else:
        models = plan(preset, signal.shape[1], tuple(signal.shape[2:]), items=signal.shape[0])
    precision = precision or DEFAULT_PRECISION
    result = fit_signal(
        signal,
        models,
        steps=models.preset.steps_for(signal.shape[0]),
        seed=seed,
        loss=adapter.loss,
        target_psnr=target_psnr,
        progress=progress,
        device=device,
        description=f"neurep fit ({adapter.name}, {models.preset.name})",
        item_label=adapter.item_label,
        quantise_as=precision if max_bytes is not None else None,
    )
    if max_bytes is not None and precision.startswith("int") and signal.shape[0] == 1:
        started = time.perf_counter()
        result = round_and_refit(result, signal, precision, loss=adapter.loss)
        result = replace(result, wall_time_s=result.wall_time_s + time.perf_counter() - started)
    record = _fit_record(result, models, seed, device, max_bytes, target_psnr)
    fitted = _Fitted(obj, adapter, signal, models, result, record, target.embedding_precision)
    if max_bytes is None and target_psnr is None and precision.startswith("int"):
        chosen = choose_steps(
            lambda scales: fitted.stored_at(precision, scales, "psnr"),
            fitted.float_state,
            fitted.output_sensitivity,
            precision,
        )
        return fitted.measured(chosen)
    if max_bytes is None:
        return fitted.stored_at(precision)
    return rate.store_within(fitted.stored_at, precision, max_bytes)


def fit_datums(
    objs_adapters_signals: list[tuple[Any, ModalityAdapter, torch.Tensor]],
    preset: Preset,
    target: StorageTarget = StorageTarget(),
    *,
    seeds: list[int],
    progress: bool = False,
    device: str | torch.device | None = None,
) -> list[NeuralDatum]:
    """:func:`fit_datum` of each ``(obj, adapter, signal)``, several at once when they can be.

    When there are at least two, every signal holds one item (``signal.shape[0] == 1``),
    all share one adapter class, preset profile and signal shape, ``target`` has no
    ``max_bytes`` and no ``psnr``, and the profiled preset has no ``batch_items`` or
    ``epochs``, they are fitted in one stacked fit
    (:func:`~neurep.fitting.stacked.fit_signals_stacked`: one plan, K independent models),
    then each is stored and measured as :func:`fit_datum` stores it; each datum equals its
    :func:`fit_datum` up to floating-point rounding, and its ``wall_time_s`` is its share
    of the stacked fit. Otherwise each is fitted alone by :func:`fit_datum`.

    Args:
        objs_adapters_signals: ``(obj, adapter, signal)`` as :func:`fit_datum` takes them.
        preset, target: shared by all (as :func:`fit_datum`).
        seeds: one per item.
        progress, device: as :func:`fit_datum`.

    Returns:
        One datum per item, in order.
    """
    items = list(objs_adapters_signals)
    if len(seeds) != len(items):
        raise ValueError(f"{len(items)} items but {len(seeds)} seeds")
    if not _stackable(items, preset, target):
        return [
            fit_datum(
                obj, adapter, signal, preset, target, seed=seed, progress=progress, device=device
            )
            for (obj, adapter, signal), seed in zip(items, seeds, strict=True)
        ]
    first_adapter, first_signal = items[0][1], items[0][2]
    profiled = preset.for_profile(first_adapter.preset_profile)
    models = plan(profiled, first_signal.shape[1], tuple(first_signal.shape[2:]), items=1)
    precision = target.precision or DEFAULT_PRECISION
    results = fit_signals_stacked(
        [signal for _, _, signal in items],
        models,
        steps=models.preset.steps_for(1),
        seeds=list(seeds),
        loss=first_adapter.loss,
        device=device,
        progress=progress,
        description=f"neurep fit ({first_adapter.name}, {models.preset.name}, x{len(items)})",
    )
    datums = []
    for (obj, adapter, signal), seed, result in zip(items, seeds, results, strict=True):
        record = _fit_record(result, models, seed, device, None, None)
        fitted = _Fitted(obj, adapter, signal, models, result, record, target.embedding_precision)
        datums.append(fitted.stored_at(precision))
    return datums


def _stackable(
    items: list[tuple[Any, ModalityAdapter, torch.Tensor]], preset: Preset, target: StorageTarget
) -> bool:
    """Whether :func:`fit_datums` may fit ``items`` in one stacked fit."""
    if len(items) < 2 or target.max_bytes is not None or target.psnr is not None:
        return False
    _, adapter, signal = items[0]
    shape, profile = tuple(signal.shape), adapter.preset_profile
    if shape[0] != 1 or len(shape) < 3:
        return False
    for _, other, other_signal in items:
        if (
            type(other) is not type(adapter)
            or other.preset_profile != profile
            or tuple(other_signal.shape) != shape
            or other.loss != adapter.loss
        ):
            return False
    profiled = preset.for_profile(profile)
    return profiled.batch_items is None and profiled.epochs is None


def _fit_record(
    result: FitResult,
    models: Plan,
    seed: int,
    device: str | torch.device | None,
    max_bytes: int | None,
    target_psnr: float | None,
) -> FitRecord:
    preset = models.preset
    return FitRecord(
        decoder_parameters=result.decoder.num_parameters(),
        preset=preset.name,
        steps=result.steps,
        learning_rate=preset.learning_rate,
        encoder_lr_scale=preset.encoder_lr_scale,
        train_encoder=preset.train_encoder,
        seed=seed,
        wall_time_s=round(result.wall_time_s, 3),
        device=str(device or ("cuda" if torch.cuda.is_available() else "cpu")),
        threads=torch.get_num_threads(),
        machine=platform.machine(),
        final_training_psnr=round(result.history[-1], 4) if result.history else None,
        budget_bytes=max_bytes,
        target_psnr=target_psnr,
        capacity=None
        if preset.parameters_per_sample is None
        else {
            "parameters_per_sample": preset.parameters_per_sample,
            "min_decoder_parameters": preset.min_decoder_parameters,
            "width_scale": models.width_scale,
        },
    )


@dataclass
class _Fitted:
    """A finished fit, before storage: float32 weights that any precision quantises from."""

    obj: Any
    adapter: ModalityAdapter
    signal: torch.Tensor
    models: Plan
    result: FitResult
    record: FitRecord
    embedding_precision: str | None

    def __post_init__(self) -> None:
        self.float_state = {k: v.clone() for k, v in self.result.decoder.state_dict().items()}
        self.embedding = self.result.embedding.numpy().astype(np.float32)  # (B, E, *s)

    def stored_at(
        self,
        precision: str,
        step_scales: StepScales | None = None,
        quality: Literal["full", "psnr"] = "full",
    ) -> NeuralDatum:
        """A datum whose weights are quantised at ``precision`` (steps scaled by
        ``step_scales``, :mod:`neurep.fitting.steps`), with its quality measured: every
        metric, or (``"psnr"``, for candidates of a search) the PSNR alone."""
        decoder = copy.deepcopy(self.result.decoder)  # each stored datum owns its decoder
        decoder.load_state_dict(self.float_state)
        metadata = datum_metadata(
            modality=self.adapter.to_config(),
            signal_shape=tuple(self.signal.shape),
            loss=self.adapter.loss,
            decoder=decoder.to_config(),
            encoder=self.models.encoder,
            embedding_shape=self.embedding.shape,
            precision=precision,
            embedding_precision=self.embedding_precision,
            fit=self.record,
        )
        datum = NeuralDatum(metadata, decoder=decoder, embedding=self.embedding)
        datum.step_scales = step_scales
        datum.freeze_storage()
        if quality == "psnr":
            psnr = self.adapter.measure_psnr(self.obj, datum)
            datum.metadata = with_quality(datum.metadata, {"psnr": psnr})
            return datum
        return self.measured(datum)

    def output_sensitivity(self) -> dict[str, torch.Tensor]:
        """:func:`~neurep.fitting.steps.output_sensitivity` of the float decoder."""
        decoder = copy.deepcopy(self.result.decoder)
        decoder.load_state_dict(self.float_state)
        embedding = torch.from_numpy(self.embedding)
        return output_sensitivity(decoder, embedding, tuple(self.signal.shape[2:]))

    def measured(self, datum: NeuralDatum) -> NeuralDatum:
        """``datum`` with every quality metric of its adapter measured and recorded."""
        datum.metadata = with_quality(datum.metadata, self.adapter.measure(self.obj, datum))
        return datum
