"""Encoders: LPNet (paper §5.4) with S3K or plain convolutions, and a ConvNeXt-style baseline.

All map a signal (B, C, *S) to an embedding (B, E, *S / prod(strides)), E = widths[-1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from neurep.models.pyramid import laplacian_pyramid
from neurep.models.registry import ConfigurableModule, register
from neurep.nn.blocks import InvertedBottleneck, conv_nd
from neurep.nn.s3k import DT_INIT, S3KConvNd, one_per

__all__ = [
    "DEFAULT_EMBEDDING_SCALE",
    "ConvNeXtEncoder",
    "LPNetEncoder",
    "level_windows",
    "normalise_levels",
    "standardise_embedding",
]

#: Every encoder's output is standardised per channel and multiplied by this (see
#: :func:`standardise_embedding`), so the decoder's first layer does not learn at whatever rate
#: the raw output's scale implies. Unit RMS suits Adam at the paper's learning rate (2e-2);
#: the probe that chose it is in benchmarks/RESULTS.md ("Optimiser").
DEFAULT_EMBEDDING_SCALE = 1.0

#: Row chunks of LPNet's S3K projections (see :class:`S3KConvNd`): a 768x512 RGB level is one
#: chunk, so fitting never recomputes it; a 4K image still gets chunks. Timings:
#: benchmarks/RESULTS.md ("S3K layer speed and memory").
S3K_CHUNK_ELEMENTS = 1 << 22


def standardise_embedding(
    features: torch.Tensor, scale: float | None, per_item: bool = False
) -> torch.Tensor:
    """(B, E, *s) -> (B, E, *s): per channel, zero mean and unit RMS over items and positions,
    times ``scale`` (None: unchanged). ``per_item``: one mean and RMS per item instead, over
    its channels and positions, so that an item's embedding does not depend on the batch it
    was encoded in (fits that train on batches of items, such as video frames, need that).

    Only the encoder does this, at fit time; the stored embedding is its result, so decoding
    does not depend on it. A channel that is constant over all items and positions becomes 0.
    """
    if scale is None:
        return features
    dims = tuple(range(1, features.dim())) if per_item else (0, *range(2, features.dim()))
    centred = features - features.mean(dim=dims, keepdim=True)
    rms = centred.square().mean(dim=dims, keepdim=True).add(1e-12).sqrt()  # (1, E, 1..)
    return centred / rms * scale


def normalise_levels(levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (B, C, *S_j) level divided by its RMS per item (over C and S_j).

    Kodak's band-pass levels have an RMS of a few hundredths against the low-pass level's
    ~0.4. A flat level (RMS 0) stays 0 rather than being blown up.
    """
    normalised = []
    for level in levels:
        dims = tuple(range(1, level.dim()))
        rms = level.square().mean(dim=dims, keepdim=True).sqrt()  # (B, 1, 1..)
        normalised.append(level / rms.clamp_min(1e-6))
    return normalised


def level_windows(strides: Sequence[int]) -> list[int]:
    """Window of the projection that brings pyramid level j (1/2^j scale) to stage j.

    Stage j sits at 1/prod(strides[:j+1]); e.g. strides [32, 2, 2, 2] -> [32, 32, 32, 32].
    """
    windows = []
    for level, stage_stride in enumerate(math.prod(strides[: j + 1]) for j in range(len(strides))):
        if stage_stride % 2**level:
            raise ValueError(
                f"strides {list(strides)}: stage {level} is at 1/{stage_stride}, which pyramid "
                f"level {level} (1/{2**level}) cannot reach with an integer window"
            )
        windows.append(stage_stride // 2**level)
    return windows


def _check_stages(strides: Sequence[int], widths: Sequence[int]) -> None:
    if len(strides) != len(widths) or not strides:
        raise ValueError("strides and widths must be non-empty and of equal length")


def _stage(width: int, ndim: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*(InvertedBottleneck(width, ndim) for _ in range(blocks)))


@register("lpnet")
class LPNetEncoder(ConfigurableModule):
    """Laplacian-pyramid network: stage j = IB(Down_j(stage j-1) + Proj_j(level j)).

    Args:
        ndim: spatial dimensions (1, 2 or 3).
        in_channels: C of the signal.
        strides: per-stage downsampling, e.g. [32, 2, 2, 2] (the paper's Kodak setting).
        widths: per-stage channels; the last is the embedding's channels.
        projection: "s3k" (LPNet-S3K) or "conv" (LPNet-Conv, strided convolutions).
        state_size: S3K state size N: one for every stage, or a sequence with one per stage.
        level_norm: divide each pyramid level by its RMS (per item, over channels and
            positions) before its projection. S3K is not linear in its input (input-adaptive
            B makes it cubic), so the small band-pass levels would otherwise reach it in a
            range where only its bias terms speak; see :func:`normalise_levels`.
        state_norm: S3K only: RMS-normalise each window's states (:class:`S3KConvNd`).
        window_span: S3K only: (min, max) of the span ``L * dt`` that one window of L
            samples covers in the SSM's time, log-uniform at initialisation; each level's
            initial step sizes are this divided by its window length. None: the layer's
            default step sizes (:data:`~neurep.nn.s3k.DT_INIT`) whatever the window.
        hidden_channels: S3K only: C, the channels each projection's 1x1 input map makes of
            a level before its windows are contracted (one for every stage, or one per
            stage). Each of the N states sums over these C channels, each with its own
            input-adaptive kernel. None: C = in_channels (3 for RGB).
        blocks_per_stage: inverted-bottleneck blocks after each stage's sum.
        embedding_scale: see :func:`standardise_embedding` (None: the raw last stage).
        per_item_norm: standardise each item's embedding on its own (batched fits).
    """

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        strides: Sequence[int],
        widths: Sequence[int],
        projection: str = "s3k",
        state_size: int | Sequence[int] = 8,
        level_norm: bool = False,
        state_norm: bool = False,
        window_span: Sequence[float] | None = None,
        hidden_channels: int | Sequence[int] | None = None,
        blocks_per_stage: int = 1,
        embedding_scale: float | None = DEFAULT_EMBEDDING_SCALE,
        per_item_norm: bool = False,
    ) -> None:
        super().__init__()
        self.embedding_scale = embedding_scale
        self.per_item_norm = per_item_norm
        self.level_norm = level_norm
        _check_stages(strides, widths)
        if projection not in {"s3k", "conv"}:
            raise ValueError(f"projection must be 's3k' or 'conv', not {projection!r}")
        if projection != "s3k" and (
            state_norm or window_span is not None or hidden_channels is not None
        ):
            raise ValueError(
                "state_norm, window_span and hidden_channels apply to S3K projections only"
            )
        if window_span is not None and len(window_span) != 2:
            raise ValueError(f"window_span must be (min, max), got {window_span!r}")
        self.total_stride = math.prod(strides)
        windows = level_windows(strides)
        state_sizes = one_per(state_size, len(widths), "state_size", of="stages")
        hidden = one_per(
            in_channels if hidden_channels is None else hidden_channels,
            len(widths),
            "hidden_channels",
            of="stages",
        )
        self.projections = nn.ModuleList(
            S3KConvNd(
                in_channels,
                width,
                window,
                ndim=ndim,
                state_size=states,
                state_norm=state_norm,
                hidden_channels=channels,
                dt_init=DT_INIT if window_span is None else [t / window for t in window_span],
                # The same input rows per chunk whatever C (the layer counts projected ones).
                chunk_elements=S3K_CHUNK_ELEMENTS * channels // in_channels,
            )
            if projection == "s3k"
            else conv_nd(ndim, in_channels, width, window, stride=window)
            for width, window, states, channels in zip(
                widths, windows, state_sizes, hidden, strict=True
            )
        )
        self.downs = nn.ModuleList(
            conv_nd(ndim, c_in, c_out, stride, stride=stride)
            for c_in, c_out, stride in zip(widths[:-1], widths[1:], strides[1:], strict=True)
        )
        self.stages = nn.ModuleList(_stage(width, ndim, blocks_per_stage) for width in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, widths[-1], *S/prod(strides))."""
        return self.from_prepared(self.prepare(x))

    def prepare(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The parameter-free part of :meth:`forward`: (B, C, *S) -> the pyramid levels it
        projects, (B, C, *S/2^j) each. A fit whose input never changes computes it once."""
        levels = laplacian_pyramid(x, len(self.projections))
        return normalise_levels(levels) if self.level_norm else levels

    def from_prepared(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """The rest of :meth:`forward`: :meth:`prepare`'s levels -> (B, E, *s)."""
        features = None
        for j, (project, stage, level) in enumerate(
            zip(self.projections, self.stages, levels, strict=True)
        ):
            projected = project(level)
            features = projected if j == 0 else self.downs[j - 1](features) + projected
            features = stage(features)
        return standardise_embedding(features, self.embedding_scale, self.per_item_norm)


@register("convnext")
class ConvNeXtEncoder(ConfigurableModule):
    """Plain hierarchy of strided convolutions and inverted bottlenecks (the paper's baseline).

    (B, C, *S) -> (B, widths[-1], *S/prod(strides)). Arguments as :class:`LPNetEncoder`
    (without the pyramid's ``projection`` and ``state_size``).
    """

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        strides: Sequence[int],
        widths: Sequence[int],
        blocks_per_stage: int = 1,
        embedding_scale: float | None = DEFAULT_EMBEDDING_SCALE,
        per_item_norm: bool = False,
    ) -> None:
        super().__init__()
        self.embedding_scale = embedding_scale
        self.per_item_norm = per_item_norm
        _check_stages(strides, widths)
        self.total_stride = math.prod(strides)
        channels = [in_channels, *widths]
        self.downs = nn.ModuleList(
            conv_nd(ndim, c_in, c_out, stride, stride=stride)
            for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        self.stages = nn.ModuleList(_stage(width, ndim, blocks_per_stage) for width in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_prepared(self.prepare(x))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Nothing to precompute: the input itself (see :meth:`LPNetEncoder.prepare`)."""
        return x

    def from_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, widths[-1], *S/prod(strides))."""
        for down, stage in zip(self.downs, self.stages, strict=True):
            x = stage(down(x))
        return standardise_embedding(x, self.embedding_scale, self.per_item_norm)
