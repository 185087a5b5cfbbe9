"""Presets: how big a network to fit and for how long; :func:`plan` sizes it for one signal.

A :class:`Preset` fixes the effort (steps, learning rate, widths). Settings that suit one kind
of datum better live in the preset's ``profiles`` (``"image"``, ``"volume"``): the modality
adapter names the profile its datum takes (:attr:`ModalityAdapter.preset_profile`), and
:meth:`Preset.for_profile` applies it. Nothing here looks at a signal's rank to decide.

The ``paper`` preset on a 768x512 image is the paper's Kodak setting (Table A4): encoder
strides [32, 2, 2, 2], widths [64, 64, 64, 16], state size 8, 300 steps, decoder strides
[4, 4, 4, 2, 2]. Why each default is what it is, with the measurements:
benchmarks/RESULTS.md ("Presets").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from neurep.errors import InputError

__all__ = ["PRESETS", "Plan", "Preset", "as_preset", "get_preset", "plan"]


@dataclass(frozen=True)
class Preset:
    """Effort and capacity of a fit, independent of the signal's size."""

    name: str
    steps: int
    learning_rate: float
    encoder: str = "lpnet"  # "lpnet" or "convnext"
    projection: str = "s3k"  # LPNet's per-level projection: "s3k" or "conv"
    encoder_widths: tuple[int, ...] = (64, 64, 64, 16)
    decoder: str = "conv_transpose"
    # Decoder widths after each upsampling stage but the last; wide at low resolution, where
    # capacity pays (RESULTS.md, "Presets").
    decoder_widths: tuple[int, ...] = (96, 64, 24, 16)
    state_size: int = 8  # S3K states per axis (paper Tables A7/A8; volumes take 32)
    # LPNet's unit-RMS pyramid levels and RMS-normalised S3K window states: without them an
    # untrained S3K projection passes little but window averages (RESULTS.md, "The norms").
    level_norm: bool = True
    state_norm: bool = True
    # S3K's initial step sizes as the span L*dt of one L-sample window, (min, max)
    # log-uniform (LPNetEncoder.window_span); None: the layer's own (1e-3, 1e-1).
    window_span: tuple[float, float] | None = None
    # Channels S3K's 1x1 input map makes of each level (LPNetEncoder.hidden_channels);
    # None: the signal's own channels.
    s3k_hidden_channels: int | None = None
    encoder_lr_scale: float = 1.0  # the encoder's learning rate as a fraction of the decoder's
    warmup_steps: int = 10
    final_lr_fraction: float = 0.01
    # False: the encoder keeps its random initialisation and computes the embedding once;
    # only the decoder is optimised (about 2x faster a step; see RESULTS.md for when it pays).
    train_encoder: bool = True
    # The first stage's stride: the largest power of two that leaves the first stage at least
    # ``first_stage_min_size`` samples a side, at most ``max_first_stride``. 32 is the
    # paper's Kodak [32, 2, 2, 2] (a 3x2 embedding); 8 gives 12x8.
    max_first_stride: int = 32
    first_stage_min_size: int = 16
    # Capacity that follows the datum: the decoder's widths are scaled down (never up) until
    # it has at most max(min_decoder_parameters, parameters_per_sample x samples), where
    # samples are the datum's pixels, voxels or array elements per item. None: the widths
    # as they are (the paper presets, and fits under a byte budget).
    parameters_per_sample: float | None = None
    min_decoder_parameters: int = 4000
    # Batched fits (video): each step trains on ``batch_items`` items (frames) of the signal
    # (None: all of them); with ``epochs`` set, a fit lasts that many passes over the items
    # and ``steps`` is ignored. Batched encoders standardise each item's embedding alone.
    batch_items: int | None = None
    epochs: int | None = None
    # Fixed strides instead of the first-stride rule (the paper's video rows, Table A4).
    encoder_strides: tuple[int, ...] | None = None
    decoder_strides: tuple[int, ...] | None = None
    # Narrower embeddings (last encoder widths) that a byte budget may choose, beside the
    # preset's own; empty: only the decoder's width and precision follow the budget.
    budget_embedding_widths: tuple[int, ...] = ()
    # Per-profile settings: {"image": {"steps": 500, ...}}; see for_profile().
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        known = {f.name for f in fields(self)} - {"name", "profiles"}
        for profile, settings in self.profiles.items():
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"preset {self.name!r}, profile {profile!r}: unknown {unknown}")

    def for_profile(self, profile: str) -> Preset:
        """This preset with ``profiles[profile]`` applied (unchanged if it has none)."""
        return replace(self, **self.profiles.get(profile, {}), profiles={})

    def with_overrides(self, **overrides: Any) -> Preset:
        """The preset with the given (non-None) fields replaced, in every profile too.

        ``steps`` given without ``epochs`` means steps: it clears any ``epochs``.
        """
        chosen = {k: v for k, v in overrides.items() if v is not None}
        if "steps" in chosen and "epochs" not in chosen:
            chosen["epochs"] = None
        profiles = {
            name: {k: v for k, v in settings.items() if k not in chosen}
            for name, settings in self.profiles.items()
        }
        return replace(self, **chosen, profiles=profiles)

    def steps_for(self, items: int) -> int:
        """Optimisation steps of a fit to ``items`` items: ``epochs`` passes, else ``steps``."""
        if self.epochs is None:
            return self.steps
        return self.epochs * math.ceil(items / min(self.batch_items or items, items))


# The default on images: a 1/64 embedding (12x8x16 numbers for 768x512), four transposed
# convolutions [4, 4, 2, 2], 16 S3K states, 500 steps at 3e-2, the encoder at 0.3x and S3K
# step sizes set from the window (RESULTS.md, "The default preset on images").
_IMAGES_AT_ONE_IN_64 = {
    "steps": 500,
    "learning_rate": 3e-2,
    "encoder_lr_scale": 0.3,
    "max_first_stride": 8,
    "decoder_widths": (96, 64, 24),
    "state_size": 16,
    "window_span": (0.08, 8.0),
}
# The paper preset on images: what the paper leaves open, S3K's input map at 6 channels
# (as good as 16 over two seeds, in 0.6x the time), and the encoder at 0.3x (RESULTS.md,
# "The paper preset").
_PAPER_S3K_IMAGES = {"s3k_hidden_channels": 6, "encoder_lr_scale": 0.3}
# Volumes (paper, Objaverse: strides [4, 2, 2]): a first stride of 2 or 4 that keeps the
# first stage at least 4 voxels wide, and 32 states.
_VOLUMES = {"max_first_stride": 4, "first_stage_min_size": 4, "state_size": 32}

# 3-D shapes (everyday presets): the paper's LPNet-S3K strides for Objaverse, [4, 2, 2] with
# widths [64, 64, 16] (a 2^3 x 16 embedding at 32^3), the decoder's strides their reverse,
# 250 steps at 2e-2, 32 S3K states. At 32^3 this fits about 3x faster than a first stride
# of 2 and more exactly (RESULTS.md, "Shapes").
_SHAPES = {
    "steps": 250,
    "encoder_strides": (4, 2, 2),
    "encoder_widths": (64, 64, 16),
    "state_size": 32,
}
# The paper's Objaverse row (Table A4): LPNet-S3K strides [4, 2, 2], LPNet-Conv and ConvNeXt
# [2, 2, 2, 2], transposed-convolution decoder strides [2, 2, 2, 2], 3e-3, 32 states (Table
# A8). The table lists widths [64, 64, 64, 16] for S3K's three stages; we drop one 64.
_PAPER_SHAPES_S3K = {
    "encoder_strides": (4, 2, 2),
    "encoder_widths": (64, 64, 16),
    "decoder_strides": (2, 2, 2, 2),
    "state_size": 32,
    "learning_rate": 3e-3,
}
_PAPER_SHAPES_CONV = {
    "encoder_strides": (2, 2, 2, 2),
    "decoder_strides": (2, 2, 2, 2),
    "state_size": 32,
    "learning_rate": 3e-3,
}

# Video (everyday presets): one decoder shared by every frame, one frame a step (more
# updates beat bigger batches), 1e-2, 80 epochs, the image default's 1/64 embedding and S3K
# settings, a decoder of at most 0.004 parameters per pixel of the whole clip, and budgets
# that may narrow the embedding to 8, 4 or 2 channels (RESULTS.md, "Video").
_VIDEO = {
    **_IMAGES_AT_ONE_IN_64,
    "learning_rate": 1e-2,
    "batch_items": 1,
    "epochs": 80,
    "parameters_per_sample": 0.004,
    "budget_embedding_widths": (8, 4, 2),
}
# The paper's video setting (Table A4, UVG row): LPNet-S3K strides [10, 8, 3, 2], an
# HNeRV-style decoder with strides [5, 4, 4, 3, 2], widths [64, 64, 64, 16], 64 S3K states,
# 2e-4, 300 epochs of one frame a step. The paper does not give HNeRV's widths here; these
# are ours.
_PAPER_VIDEO = {
    "encoder_strides": (10, 8, 3, 2),
    "decoder": "nerv",
    "decoder_strides": (5, 4, 4, 3, 2),
    "decoder_widths": (96, 64, 48, 32, 16),
    "state_size": 64,
    "learning_rate": 2e-4,
    "batch_items": 1,
    "epochs": 300,
}

#: LPNet-Conv: plain strided convolutions, and plain pyramid levels.
_LPNET_CONV = {"projection": "conv", "level_norm": False, "state_norm": False}

#: The capacity rule of the everyday presets: at most 0.335 decoder parameters per pixel,
#: voxel or array element (about 2.7 bits per pixel at int8; a 768x512 image keeps the full
#: default decoder), and at least 4000, so that small data get small files
#: (benchmarks/sizes.py, RESULTS.md "Sizes").
_CAPACITY = {"parameters_per_sample": 0.335, "min_decoder_parameters": 4000}

# Learning rates of the paper* presets are Table A4's (S3K 2e-2, Conv 3e-2, ConvNeXt 1e-2);
# they keep the paper's fixed network whatever the datum's size.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "fast",
            120,
            2e-2,
            profiles={
                "volume": _VOLUMES,
                "video": {**_VIDEO, "epochs": 10},
                "shape": {**_SHAPES, "steps": 120},
            },
            **_CAPACITY,
        ),
        Preset(
            "balanced",
            1100,
            2e-2,
            profiles={
                "image": _IMAGES_AT_ONE_IN_64,
                "volume": _VOLUMES,
                "video": _VIDEO,
                "shape": _SHAPES,
            },
            **_CAPACITY,
        ),
        Preset(
            "balanced-conv",
            1100,
            2e-2,
            profiles={
                "image": _IMAGES_AT_ONE_IN_64,
                "volume": _VOLUMES,
                "video": _VIDEO,
                "shape": _SHAPES,
            },
            **_CAPACITY,
            **_LPNET_CONV,
        ),
        Preset(
            "paper",
            300,
            2e-2,
            profiles={
                "image": _PAPER_S3K_IMAGES,
                "volume": _VOLUMES,
                "video": _PAPER_VIDEO,
                "shape": _PAPER_SHAPES_S3K,
            },
        ),
        Preset(
            "paper-conv",
            300,
            3e-2,
            profiles={"volume": _VOLUMES, "video": _PAPER_VIDEO, "shape": _PAPER_SHAPES_CONV},
            **_LPNET_CONV,
        ),
        Preset(
            "paper-convnext",
            300,
            1e-2,
            encoder="convnext",
            profiles={"volume": _VOLUMES, "video": _PAPER_VIDEO, "shape": _PAPER_SHAPES_CONV},
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The built-in preset called ``name``; InputError naming the choices otherwise."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def as_preset(preset: str | Preset) -> Preset:
    """A preset name or a :class:`Preset` object, as a :class:`Preset`."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str):
        return get_preset(preset)
    raise InputError(f"preset must be a name or a neurep.fitting.Preset, not {preset!r:.60}")


@dataclass(frozen=True)
class Plan:
    """Concrete models for one signal: descriptions plus the padded size they need.

    ``width_scale`` is what the capacity rule multiplied the preset's decoder widths by.
    """

    encoder: dict[str, Any]
    decoder: dict[str, Any]
    total_stride: int
    padded_shape: tuple[int, ...]
    preset: Preset = field(repr=False)
    width_scale: float = 1.0


def _first_stride(min_side: int, largest: int, min_size: int) -> int:
    """The largest power of two (2..``largest``) leaving at least ``min_size`` samples."""
    return int(min(largest, max(2, 2 ** math.floor(math.log2(max(min_side, 1) / min_size)))))


def _decoder_strides(total_stride: int, stages: int) -> list[int]:
    """Split 2^k into ``stages`` factors of 4 and 2, large ones first ([4,4,4,2,2] for 256)."""
    k = int(math.log2(total_stride))
    fours = min(k - stages, stages) if k >= stages else 0
    strides = [4] * fours + [2] * (k - 2 * fours)
    return strides if strides else [1]


def plan(preset: Preset, channels: int, spatial: Sequence[int], items: int = 1) -> Plan:
    """Encoder and decoder descriptions for a signal (B = items, C = channels, S = spatial).

    ``preset`` is used as given: apply the datum's profile first (:meth:`Preset.for_profile`).
    The capacity rule counts the samples of all items (a clip's frames share one decoder).
    """
    ndim = len(spatial)
    stages = len(preset.encoder_widths)
    if preset.encoder_strides is not None:
        strides = list(preset.encoder_strides)
    else:
        first = _first_stride(min(spatial), preset.max_first_stride, preset.first_stage_min_size)
        strides = [first] + [2] * (stages - 1)
        convolutional = preset.encoder != "lpnet" or preset.projection == "conv"
        if convolutional and first >= 4 and stages >= 2:
            # Convolutional encoders do better with more uniform strides (paper Table A4:
            # [16, 4, 2, 2] for LPNet-Conv on Kodak); keep the same total stride.
            strides = [first // 2, 4] + [2] * (stages - 2)
    total = math.prod(strides)
    padded = tuple(math.ceil(s / total) * total for s in spatial)
    encoder_config: dict[str, Any] = {
        "ndim": ndim,
        "in_channels": channels,
        "strides": strides,
        "widths": list(preset.encoder_widths),
    }
    if preset.encoder == "lpnet":
        s3k = preset.projection == "s3k"
        encoder_config.update(
            projection=preset.projection,
            state_size=preset.state_size,
            level_norm=preset.level_norm,
            state_norm=preset.state_norm and s3k,
        )
        if s3k and preset.window_span is not None:
            encoder_config["window_span"] = list(preset.window_span)
        if s3k and preset.s3k_hidden_channels is not None:
            encoder_config["hidden_channels"] = preset.s3k_hidden_channels
    if preset.batch_items is not None:  # a batch's statistics must not shape an item's code
        encoder_config["per_item_norm"] = True
    if preset.decoder_strides is not None:
        decoder_strides = list(preset.decoder_strides)
        if math.prod(decoder_strides) != total:
            raise ValueError(
                f"preset {preset.name!r}: decoder strides {decoder_strides} do not multiply "
                f"to the encoder's {strides}"
            )
    elif preset.encoder_strides is not None:
        decoder_strides = strides[::-1]
    else:
        decoder_strides = _decoder_strides(total, len(preset.decoder_widths) + 1)
    # NeRV blocks end each stage at a width, then a head; transposed stages end at the output
    hidden_stages = len(decoder_strides) - (0 if preset.decoder == "nerv" else 1)
    decoder = {
        "name": preset.decoder,
        "configuration": {
            "ndim": ndim,
            "in_channels": preset.encoder_widths[-1],
            "out_channels": channels,
            "strides": decoder_strides,
            "widths": list(preset.decoder_widths[:hidden_stages]),
        },
    }
    scale = 1.0
    if preset.parameters_per_sample is not None:
        budget = decoder_parameter_budget(preset, items * math.prod(spatial))
        decoder, scale = _within_parameters(decoder, budget)
    return Plan(
        encoder={"name": preset.encoder, "configuration": encoder_config},
        decoder=decoder,
        total_stride=total,
        padded_shape=padded,
        preset=preset,
        width_scale=scale,
    )


def decoder_parameter_budget(preset: Preset, samples: int) -> int:
    """The most decoder parameters the capacity rule allows a datum of ``samples``."""
    per_sample = preset.parameters_per_sample or 0.0
    return max(preset.min_decoder_parameters, math.floor(per_sample * samples))


def _within_parameters(decoder: dict[str, Any], budget: int) -> tuple[dict[str, Any], float]:
    """``decoder`` with its widths scaled by the largest factor in (0, 1] (to 1/256) that
    leaves at most ``budget`` parameters (2 channels a stage at least), and the factor."""
    widths = decoder["configuration"]["widths"]

    def scaled(scale: float) -> dict[str, Any]:
        narrower = [max(2, round(w * scale)) for w in widths]
        return {**decoder, "configuration": {**decoder["configuration"], "widths": narrower}}

    if _parameters(decoder) <= budget:
        return decoder, 1.0
    low, high = 0, 256  # the answer is in [low, high) / 256
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _parameters(scaled(middle / 256)) <= budget else (low, middle)
    scale = max(low, 1) / 256
    return scaled(scale), scale


def _parameters(decoder: dict[str, Any]) -> int:
    import torch

    from neurep.models import build

    with torch.device("meta"):  # shapes only: nothing is allocated
        return build(decoder).num_parameters()
