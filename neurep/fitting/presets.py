"""Presets: how big a network to fit, for how long, chosen from the signal's shape.

A preset fixes the effort (steps, learning rate, widths); :func:`plan` turns it into concrete
encoder and decoder descriptions for one signal, picking strides that suit its size. The
``paper`` preset on a 768x512 image is the paper's Kodak setting (Table A4): encoder strides
[32, 2, 2, 2], widths [64, 64, 64, 16], state size 8, 300 steps, decoder transposed
convolutions with strides [4, 4, 4, 2, 2] (learning rate: see the note at PRESETS). On images
it also sets what the paper leaves open: S3K's input map has 16 channels (_PAPER_S3K_IMAGES).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from neurep.errors import InputError

__all__ = ["PRESETS", "Plan", "Preset", "get_preset", "plan"]


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
    # Decoder widths after each upsampling stage but the last. Capacity at low resolution
    # pays: against (80, 64, 32, 24), these gave +0.9 to +1.25 dB on kodim01/03/05/08 at
    # 300 steps, in 15% less time (151,387 parameters for a 768x512 RGB image).
    decoder_widths: tuple[int, ...] = (96, 64, 24, 16)
    state_size: int | None = None  # None: 8 for 1-D/2-D, 32 for 3-D (paper Tables A7/A8)
    # LPNet options (neurep/models/encoders.py): unit-RMS pyramid levels, and each S3K
    # window's states RMS-normalised. Without them an untrained S3K projection passes little
    # but window averages. kodim01 at a 1/64 embedding, 300 steps: decoder fitted to the
    # untrained S3K code 23.4 dB (level norm 25.6, both 28.2; Conv's untrained code 28.7);
    # trained 28.1 -> 29.0 dB (Conv 29.0). Conv keeps plain levels: they cost it 0.14-0.23 dB
    # on kodim01/05. state_norm applies to S3K projections only.
    level_norm: bool = True
    state_norm: bool = True
    # S3K's initial step sizes as the span L*dt of one L-sample window, (min, max) log-uniform
    # (LPNetEncoder.window_span); None: the layer's (1e-3, 1e-1) whatever the window. The 1/64
    # image default sets _S3K_WINDOW_SPAN.
    window_span: tuple[float, float] | None = None
    # Channels S3K's 1x1 input map makes of each pyramid level (LPNetEncoder.hidden_channels);
    # None: the signal's own channels.
    s3k_hidden_channels: int | None = None
    # The encoder's learning rate as a fraction of ``learning_rate`` (the decoder's). See
    # _IMAGES_AT_ONE_IN_64 for what it does to both LPNet encoders.
    encoder_lr_scale: float = 1.0
    warmup_steps: int = 10
    final_lr_fraction: float = 0.01
    # False: the encoder keeps its random initialisation and computes the embedding once;
    # only the decoder is optimised (about 2x faster per step). With the 96-number Kodak
    # embedding this fits as well or better: see benchmarks/encoder_ablation.py.
    train_encoder: bool = True
    # The largest first-stage stride (1-D and 2-D; 3-D has its own rule in plan()). 32 is the
    # paper's Kodak [32, 2, 2, 2]: a 768x512 image becomes a 3x2 embedding, 96 numbers, and the
    # encoder hardly matters; 8 gives 12x8, where what the encoder passes on counts.
    max_first_stride: int = 32
    # Fields that differ for 2-D signals (images), e.g. {"steps": 500}; see for_ndim().
    image_overrides: dict[str, Any] = field(default_factory=dict, hash=False)

    def for_ndim(self, ndim: int) -> Preset:
        """This preset as it applies to a signal with ``ndim`` spatial axes."""
        if ndim != 2 or not self.image_overrides:
            return replace(self, image_overrides={})
        return replace(self, **self.image_overrides, image_overrides={})

    def with_overrides(self, **overrides: Any) -> Preset:
        """The preset with the given (non-None) fields replaced, for every rank."""
        chosen = {k: v for k, v in overrides.items() if v is not None}
        images = {k: v for k, v in self.image_overrides.items() if k not in chosen}
        return replace(self, **chosen, image_overrides=images)


# Learning rates: the paper's Table A4 gives 2e-2 (S3K), 3e-2 (Conv), 1e-2 (ConvNeXt); the
# "paper*" presets keep them and its 300 steps literally (the S3K encoder's own rate is 0.3x
# that on images: see _PAPER_S3K_IMAGES). The other presets use the S3K rate
# too: with a unit-RMS embedding, the output bias started at the signal's mean and Adam betas
# (0.8, 0.95), 2e-2 beat 1e-2 and 5e-3 at 120 steps on kodim01 + kodim05 (24.1 / 23.1 /
# 20.9 dB) and beat 5e-3 at 1100 steps (28.8 / 27.2 dB). Measured figures: benchmarks/.

# The default for images (2-D signals; 1-D and 3-D keep the paper's shapes): a 1/64 embedding
# (12x8x16 numbers for 768x512, about 1.5 kB at int8), a decoder of four transposed
# convolutions [4, 4, 2, 2] (131,339 parameters for RGB), and 16 S3K states (the paper's best
# on Kodak, Table A7). At 300 steps on kodim05 (seeds 0/1/2): S3K with 8 states 26.74 / 27.74 /
# 27.30 dB, with 16 states 27.47 / 27.83 (seeds 0/1), Conv 27.86 / 27.66 / 27.60; the paper's
# 1/256 shape gave S3K 26.32. A step costs about 2.5x the 1/256 shape's (the encoder works at
# 1/8 instead of 1/32), hence 500 steps, to keep a 768x512 fit under 90 s on 2 CPU cores.
# Learning rate 3e-2 for both encoders (the paper's Conv rate): at 300 steps, seed 0, S3K
# kodim05 25.50 / 27.47 / 28.35 / 27.42 dB at 1e-2 / 2e-2 / 3e-2 / 4e-2; Conv kodim01 28.99 ->
# 29.53 and kodim05 27.86 -> 27.82 from 2e-2 to 3e-2. Measured in full: benchmarks/kodak_fit.py.
# The encoder learns at 0.3x that rate (encoder_lr_scale), which helps both encoders
# (benchmarks/kodak_fit.py, seed 0, kodim01-08): S3K 33.43 -> 33.88 dB mean (kodim06 31.27 ->
# 32.39), Conv 33.44 -> 33.95 (kodim02 36.34 -> 37.34). S3K on kodim06 at seed 1: 30.34 dB at
# 1x, 32.49 at 0.3x, 32.17 at 0.1x, 31.45 with lam and dt frozen (Conv 32.65 at 1x, 32.58 at
# 0.3x). The gain is early: S3K on that image was at 24.1 dB after 200 steps at 1x, 27.9 at 0.3x.
# S3K step sizes at the 1/64 default: one window spans 0.08 to 8 in the SSM's time (dt =
# span / L), so at initialisation the slowest states weigh a window almost evenly and the
# fastest see its last sample or two. The layer's own (1e-3, 1e-1), the S4/Mamba habit for
# long sequences, makes most states near-flat averages of the default's 8-sample windows.
# benchmarks/kodak_fit.py, kodim01-08, S3K mean: seed 0 33.88 -> 33.99 dB, seed 1 33.94 ->
# 34.00 (Conv 33.95 / 33.96); seed 2 33.88 (Conv 33.58). Not for the paper's 32-sample
# windows: there the same span gave 30.02 / 29.66 / 29.39 dB at seeds 0/1/2, against 30.03 /
# 29.80 / 29.65 without it.
_S3K_WINDOW_SPAN = (0.08, 8.0)

# The paper preset on images: S3K's input map widened to 16 channels and the encoder at 0.3x.
# The paper leaves C, the channels of S3K's 1x1 input projection (A.8.2), open; C = 3 (RGB)
# gives each of a window's 8 states only 3 input-adaptive kernels to sum. Probes, kodim01-08,
# 300 steps, S3K mean PSNR at seeds 1 / 2 (LPNet-Conv at its Table A4 settings 30.08 / 30.08):
# C = 3 29.80 / 29.65; C = 8 30.03 (seed 1); C = 16 30.18 / 30.02; C = 16 with the encoder at
# 0.3x 30.39 / 30.16 (seed 0: 30.10, Conv 30.09). C = 32 did no better on 3 images at twice
# the time. Conv at 0.3x did no better than at 1x (30.09 / 29.92), so it keeps Table A4's rate.
# The cost: an S3K fit takes about 35 s instead of 19 s (Conv: 14 s).
_PAPER_S3K_IMAGES = {"s3k_hidden_channels": 16, "encoder_lr_scale": 0.3}

_IMAGES_AT_ONE_IN_64 = {
    "steps": 500,
    "learning_rate": 3e-2,
    "encoder_lr_scale": 0.3,
    "max_first_stride": 8,
    "decoder_widths": (96, 64, 24),
    "state_size": 16,
    "window_span": _S3K_WINDOW_SPAN,
}

#: LPNet-Conv: plain strided convolutions, and plain pyramid levels (see Preset.level_norm).
_LPNET_CONV = {"projection": "conv", "level_norm": False, "state_norm": False}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("fast", steps=120, learning_rate=2e-2),
        Preset("balanced", steps=1100, learning_rate=2e-2, image_overrides=_IMAGES_AT_ONE_IN_64),
        Preset(
            "balanced-conv",
            steps=1100,
            learning_rate=2e-2,
            image_overrides=_IMAGES_AT_ONE_IN_64,
            **_LPNET_CONV,
        ),
        Preset("paper", steps=300, learning_rate=2e-2, image_overrides=_PAPER_S3K_IMAGES),
        Preset("paper-conv", steps=300, learning_rate=3e-2, **_LPNET_CONV),
        Preset("paper-convnext", steps=300, learning_rate=1e-2, encoder="convnext"),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Plan:
    """Concrete models for one signal: descriptions plus the padded size they need."""

    encoder: dict[str, Any]
    decoder: dict[str, Any]
    total_stride: int
    padded_shape: tuple[int, ...]
    preset: Preset = field(repr=False)


def _first_stride(min_side: int, largest: int = 32) -> int:
    """A power of two for the first stage: 32 for Kodak-size images, smaller for small data."""
    return int(min(largest, max(2, 2 ** math.floor(math.log2(max(min_side, 1) / 16)))))


def _decoder_strides(total_stride: int, stages: int) -> list[int]:
    """Split 2^k into ``stages`` factors of 4 and 2, large ones first ([4,4,4,2,2] for 256)."""
    k = int(math.log2(total_stride))
    fours = min(k - stages, stages) if k >= stages else 0
    strides = [4] * fours + [2] * (k - 2 * fours)
    return strides if strides else [1]


def plan(preset: Preset, channels: int, spatial: Sequence[int]) -> Plan:
    """Encoder and decoder descriptions for a signal (C = channels, S = spatial).

    The plan's preset is ``preset.for_ndim(len(spatial))``: steps and learning rate to fit with.
    """
    ndim = len(spatial)
    preset = preset.for_ndim(ndim)
    state_size = preset.state_size or (32 if ndim == 3 else 8)
    stages = len(preset.encoder_widths)
    if ndim == 3:  # paper, Objaverse: [4, 2, 2]; keep the embedding at least 2 voxels wide
        first = max(2, min(4, _first_stride(min(spatial) * 4)))
    else:
        first = _first_stride(min(spatial), preset.max_first_stride)
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
        encoder_config.update(
            projection=preset.projection,
            state_size=state_size,
            level_norm=preset.level_norm,
            state_norm=preset.state_norm and preset.projection == "s3k",
        )
        if preset.projection == "s3k" and preset.window_span is not None:
            encoder_config["window_span"] = list(preset.window_span)
        if preset.projection == "s3k" and preset.s3k_hidden_channels is not None:
            encoder_config["hidden_channels"] = preset.s3k_hidden_channels
    decoder_strides = _decoder_strides(total, len(preset.decoder_widths) + 1)
    decoder_config = {
        "ndim": ndim,
        "in_channels": preset.encoder_widths[-1],
        "out_channels": channels,
        "strides": decoder_strides,
        "widths": list(preset.decoder_widths[: len(decoder_strides) - 1]),
    }
    return Plan(
        encoder={"name": preset.encoder, "configuration": encoder_config},
        decoder={"name": preset.decoder, "configuration": decoder_config},
        total_stride=total,
        padded_shape=padded,
        preset=preset,
    )
