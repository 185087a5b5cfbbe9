"""Test helpers for the S3K layer: an independent loop-based oracle, strategies, parameter maps.

Nothing here calls :mod:`neurep.nn.functional` or the layer's private methods: the oracle
re-derives the layer from docs/ARCHITECTURE.md ("The S3K layer") / paper A.8.2 with explicit
loops (window by window, state recurrence step by step), so the tests that compare against it
can catch bugs in code that the fast and the reference paths share (window extraction,
adaptive B, ZOH, the gate).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from neurep.nn import DT_RANGE, LAMBDA_RANGE, S3KConvNd


@dataclass(frozen=True)
class LayerConfig:
    """Everything needed to build a layer and an input that fits it."""

    ndim: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    spatial: tuple[int, ...]
    batch: int = 1
    in_channels: int = 2
    out_channels: int = 3
    hidden_channels: int = 2
    state_size: int = 3
    adaptive_b: bool = True
    gate: bool = True
    state_norm: bool = False
    chunk_elements: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def build(self, implementation: str = "fast", chunk_elements: int | None = -1) -> S3KConvNd:
        """A float64 layer with random, well-spread parameters (deterministic in ``seed``)."""
        layer = S3KConvNd(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            ndim=self.ndim,
            state_size=self.state_size,
            hidden_channels=self.hidden_channels,
            adaptive_b=self.adaptive_b,
            gate=self.gate,
            state_norm=self.state_norm,
            implementation=implementation,
            chunk_elements=self.chunk_elements if chunk_elements == -1 else chunk_elements,
        ).double()
        randomise_parameters(layer, self.seed)
        return layer

    def input(self, seed_offset: int = 1) -> torch.Tensor:
        """A random float64 input (B, C_in, *S)."""
        gen = torch.Generator().manual_seed(self.seed + seed_offset)
        shape = (self.batch, self.in_channels, *self.spatial)
        return torch.randn(shape, generator=gen, dtype=torch.float64)


def randomise_parameters(layer: S3KConvNd, seed: int) -> None:
    """Overwrite every parameter with random values, keeping lam*dt in a range where the
    kernel's decay is clearly visible (the default dt init makes kernels nearly flat, which
    would hide direction and exponent bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if name == "log_neg_lambda":
                # |lam| in [0.3, 5], distinct per state (sorted + spread).
                base = torch.linspace(
                    math.log(0.3), math.log(5.0), param.shape[1], dtype=param.dtype
                )
                jitter = 0.05 * torch.rand(param.shape, generator=gen, dtype=param.dtype)
                param.copy_(base + jitter)
            elif name == "log_dt":
                low, high = math.log(0.05), math.log(1.0)
                param.copy_(
                    low + (high - low) * torch.rand(param.shape, generator=gen, dtype=param.dtype)
                )
            else:
                param.copy_(0.7 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def constrained(layer: S3KConvNd) -> tuple[torch.Tensor, torch.Tensor]:
    """(lam, dt), each (d, N), from the documented parametrisation (written out here)."""
    lam = -torch.clamp(torch.exp(layer.log_neg_lambda), min=LAMBDA_RANGE[0], max=LAMBDA_RANGE[1])
    dt = torch.clamp(torch.exp(layer.log_dt), min=DT_RANGE[0], max=DT_RANGE[1])
    return lam, dt


def _silu(v: torch.Tensor) -> torch.Tensor:
    return v / (1.0 + torch.exp(-v))


def oracle_forward(layer: S3KConvNd, x: torch.Tensor) -> torch.Tensor:
    """The S3K layer, one window at a time, each axis contracted by running its recurrence.

    x (B, C_in, *S) -> (B, C_out, *O). Float64 recommended; slow (loops), for small shapes.
    """
    d = layer.ndim
    kernel, stride, padding = layer.kernel_size, layer.stride, layer.padding
    batch, _, *spatial = x.shape
    # Zero padding, by hand.
    padded = torch.zeros(
        batch,
        x.shape[1],
        *(s + 2 * p for s, p in zip(spatial, padding, strict=True)),
        dtype=x.dtype,
    )
    padded[
        (
            slice(None),
            slice(None),
            *(slice(p, p + s) for s, p in zip(spatial, padding, strict=True)),
        )
    ] = x
    # 1x1 input projection.
    proj = torch.einsum("oc,bc...->bo...", layer.in_proj.weight, padded)
    proj = proj + layer.in_proj.bias.reshape(1, -1, *([1] * d))
    out_shape = [
        (s + 2 * p - k) // st + 1
        for s, k, st, p in zip(spatial, kernel, stride, padding, strict=True)
    ]
    lam, dt = constrained(layer)  # (d, N)
    lam_bar = torch.exp(lam * dt)
    b_scale = (torch.exp(lam * dt) - 1.0) / lam  # plain ZOH, no expm1
    n_states = layer.state_size
    hidden = proj.shape[1]
    states = torch.zeros(batch, n_states, *out_shape, dtype=x.dtype)
    residuals = torch.zeros(batch, n_states, *out_shape, dtype=x.dtype)
    for b in range(batch):
        for pos in itertools.product(*(range(o) for o in out_shape)):
            index = (
                b,
                slice(None),
                *(slice(o * st, o * st + k) for o, st, k in zip(pos, stride, kernel, strict=True)),
            )
            window = proj[index]  # (C, K_1..K_d)
            total = torch.zeros(n_states, dtype=x.dtype)
            for c in range(hidden):
                total = total + _window_state(layer, window[c], lam_bar, b_scale, c)
            states[(b, slice(None), *pos)] = total
            if layer.gate:
                average = window.reshape(hidden, -1).mean(dim=1)  # (C,)
                residuals[(b, slice(None), *pos)] = (
                    layer.res_proj.weight @ average + layer.res_proj.bias
                )
    if layer.state_norm is not None:  # RMS over the N states of each window, times a gain
        mean_square = (states**2).mean(dim=1, keepdim=True)
        gain = layer.state_norm.gain.reshape(1, -1, *([1] * d))
        states = states / torch.sqrt(mean_square + layer.state_norm.eps) * gain
    if layer.gate:
        states = states * _silu(residuals) + residuals
    out = torch.einsum("on,bn...->bo...", layer.out_proj.weight, states)
    return out + layer.out_proj.bias.reshape(1, -1, *([1] * d))


def _window_state(
    layer: S3KConvNd,
    window: torch.Tensor,
    lam_bar: torch.Tensor,
    b_scale: torch.Tensor,
    channel: int,
) -> torch.Tensor:
    """Last state (N,) for one channel's window (K_1..K_d): recurrence along the last axis,
    then along the one before, ... with B^(i)[k_i, n] from the window's other axes."""
    d = window.dim()
    n_states = lam_bar.shape[1]
    b_per_axis = []
    for axis in range(d):
        length = window.shape[axis]
        if layer.adaptive_b:
            # Rows of b_weight[axis]: the other axes, flattened in increasing axis order.
            others = window.movedim(axis, 0).reshape(length, -1)  # (K_axis, prod others)
            b = others @ layer.b_weight[axis] + layer.b_bias[axis]  # (K_axis, N)
        else:
            b = layer.b_fixed[axis][channel].expand(length, n_states)  # (K_axis, N)
        b_per_axis.append(b)
    values = window.expand(n_states, *window.shape)  # (N, K_1..K_d)
    for axis in range(d - 1, -1, -1):
        length = window.shape[axis]
        shape = (n_states,) + (1,) * axis
        state = torch.zeros(values.shape[:-1], dtype=window.dtype)
        for k in range(length):
            step_b = (b_scale[axis] * b_per_axis[axis][k]).reshape(shape)
            state = lam_bar[axis].reshape(shape) * state + step_b * values[..., k]
        values = state
    return values  # (N,)


# -- hypothesis strategies ---------------------------------------------------------------------


@st.composite
def layer_configs(
    draw: st.DrawFn,
    ndims: tuple[int, ...] = (1, 2, 3, 4),
    max_outputs: int = 3,
    adaptive_b: bool | None = None,
    gate: bool | None = None,
    state_norm: bool | None = None,
    chunked: bool | None = None,
    max_padding: int = 1,
) -> LayerConfig:
    """Random layer + input geometry: strides below, equal to and above the window, padding,
    batch and channel counts, state sizes, adaptive or fixed B, gate, state norm, chunking."""
    ndim = draw(st.sampled_from(ndims))
    max_kernel = {1: 5, 2: 4, 3: 3, 4: 2}[ndim]
    max_out = max_outputs if ndim <= 2 else 2
    kernel, stride, padding, spatial = [], [], [], []
    for _ in range(ndim):
        k = draw(st.integers(1, max_kernel))
        s = draw(st.integers(1, k + 1))
        p = draw(st.integers(0, max_padding))
        outputs = draw(st.integers(1, max_out))
        extra = draw(st.integers(0, s - 1))
        size = (outputs - 1) * s + k + extra - 2 * p
        if size < 1:
            p, size = 0, (outputs - 1) * s + k + extra
        kernel.append(k)
        stride.append(s)
        padding.append(p)
        spatial.append(size)
    if chunked is None:
        chunked = draw(st.booleans())
    batch = draw(st.integers(1, 2))
    in_channels = draw(st.integers(1, 3))
    hidden = draw(st.integers(1, 3))
    chunk_elements = None
    if chunked:
        # The layer splits output rows (first spatial axis) into chunks reading about
        # chunk_elements projected inputs; one output row reads this many:
        row = (
            batch
            * hidden
            * kernel[0]
            * math.prod(s + 2 * p for s, p in zip(spatial[1:], padding[1:], strict=True))
        )
        chunk_elements = draw(st.integers(1, 3)) * row  # 1..3 rows per chunk
    return LayerConfig(
        ndim=ndim,
        kernel_size=tuple(kernel),
        stride=tuple(stride),
        padding=tuple(padding),
        spatial=tuple(spatial),
        batch=batch,
        in_channels=in_channels,
        out_channels=draw(st.integers(1, 3)),
        hidden_channels=hidden,
        state_size=draw(st.integers(1, 4)),
        adaptive_b=draw(st.booleans()) if adaptive_b is None else adaptive_b,
        gate=draw(st.booleans()) if gate is None else gate,
        state_norm=draw(st.booleans()) if state_norm is None else state_norm,
        chunk_elements=chunk_elements,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


# -- parameter maps ----------------------------------------------------------------------------


def permuted_layer(layer: S3KConvNd, perm: tuple[int, ...]) -> S3KConvNd:
    """The layer whose spatial axis j is ``layer``'s axis ``perm[j]``.

    Per-axis parameters move with their axis; the rows of the adaptive-B weight of an axis are
    indexed by the *other* axes flattened in increasing order, so they are permuted too.
    """
    d = layer.ndim
    new = S3KConvNd(
        layer.in_channels,
        layer.out_channels,
        [layer.kernel_size[a] for a in perm],
        [layer.stride[a] for a in perm],
        [layer.padding[a] for a in perm],
        ndim=d,
        state_size=layer.state_size,
        hidden_channels=layer.hidden_channels,
        adaptive_b=layer.adaptive_b,
        gate=layer.gate,
        state_norm=layer.state_norm is not None,
        implementation=layer.implementation,
        chunk_elements=layer.chunk_elements,
    ).to(layer.log_dt.dtype)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    perm_index = torch.tensor(perm)
    state["log_neg_lambda"] = state["log_neg_lambda"][perm_index]
    state["log_dt"] = state["log_dt"][perm_index]
    if layer.adaptive_b:
        state["b_bias"] = state["b_bias"][perm_index]
        for j in range(d):
            old_axis = perm[j]
            old_others = [a for a in range(d) if a != old_axis]  # old order of the rows
            new_others = [perm[m] for m in range(d) if m != j]  # same axes, new order
            weight = layer.b_weight[old_axis].detach()
            grid = weight.reshape(*(layer.kernel_size[a] for a in old_others), -1)
            order = [old_others.index(a) for a in new_others] + [len(old_others)]
            state[f"b_weight.{j}"] = grid.permute(order).reshape(weight.shape[0], -1).clone()
    else:
        state["b_fixed"] = state["b_fixed"][perm_index]
    new.load_state_dict(state)
    return new
