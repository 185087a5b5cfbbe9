"""S3K convolution: an N-d convolution whose kernel comes from a diagonal state-space model.

Paper §5.1-5.3 and Appendix A.8; notation: docs/ARCHITECTURE.md, "The S3K layer".
For every window of size (K_1..K_d) and every (projected) channel c, each spatial axis i has
a 1-D SSM kernel ``K^(i)[c, n, k_i]`` (see :mod:`neurep.nn.functional`); the d-dim kernel is
their outer product, and the layer output for the window is
``y[n] = sum_c sum_k X[c, k] prod_i K^(i)[c, n, k_i]`` — the last
state of the SSM run over the window. Around it (A.8.2): a 1x1 input projection, a gate and
residual from the window average, and a 1x1 projection from the N states to the outputs.
Optionally (``state_norm``, what LPNet uses) the N states of each window are RMS-normalised
before the gate, as Mamba-2 normalises before its output projection.

Departures from the paper's text, on purpose:
- The residual branch projects the *window average* of the projected input to N channels.
  Average pooling and 1x1 convolutions are both linear, so this is the paper's
  "project, then average-pool" with the two linear maps composed, at 1/window the cost.
- ZOH uses ``(exp(lam*dt) - 1) / lam`` (the paper's Eq. 54 prints an extra dt; a typo).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from neurep.nn.blocks import ChannelRMSNorm
from neurep.nn.functional import (
    contract_leading_axes,
    contract_windows,
    contract_windows_reference,
    s3k_coefficients,
)
from neurep.nn.pointwise import Pointwise
from neurep.nn.window_maps import AdaptiveWindowMaps

__all__ = [
    "DT_INIT",
    "DT_RANGE",
    "LAMBDA_RANGE",
    "S3KConv1d",
    "S3KConv2d",
    "S3KConv3d",
    "S3KConvNd",
    "one_per",
]

#: Allowed step sizes: dt is clamped here, so lam*dt <= -1e-6 and exp(lam*dt) < 1 in float32.
DT_RANGE = (1e-4, 10.0)
#: Allowed |lam|: lam = -clamp(exp(param), *LAMBDA_RANGE).
LAMBDA_RANGE = (1e-2, 1e3)
#: The layer's default (min, max) for the log-uniform initial step sizes: the S4/Mamba habit,
#: made for sequences far longer than an image window. LPNet can set its own (window_span).
DT_INIT = (1e-3, 1e-1)

_LOG_DT_RANGE = (math.log(DT_RANGE[0]), math.log(DT_RANGE[1]))
_LOG_LAMBDA_RANGE = (math.log(LAMBDA_RANGE[0]), math.log(LAMBDA_RANGE[1]))

Implementation = Literal["fast", "reference"]


def one_per(
    value: int | Sequence[int], count: int, name: str, of: str = "spatial axes"
) -> tuple[int, ...]:
    """``value`` once per item: an int is repeated ``count`` times; a sequence must have
    ``count`` entries (``of`` names the items in the error)."""
    if isinstance(value, int):
        return (value,) * count
    value = tuple(int(v) for v in value)
    if len(value) != count:
        raise ValueError(f"{name} has {len(value)} entries for {count} {of}")
    return value


def conv_output_shape(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> tuple[int, ...]:
    """The ConvNd shape formula: ``floor((S + 2p - K) / s) + 1`` per axis."""
    return tuple(
        (s + 2 * p - k) // st + 1
        for s, k, st, p in zip(spatial, kernel, stride, padding, strict=True)
    )


class S3KConvNd(nn.Module):
    """S3K convolution over ``ndim`` spatial dimensions.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: the window (K_1..K_d), an int or one per axis.
        stride: None (= kernel_size, non-overlapping windows, the paper's case) or per axis.
        padding: zero padding on both sides, an int or one per axis.
        ndim: number of spatial dimensions d >= 1.
        state_size: N, states per axis (the SSM's size).
        hidden_channels: C, channels after the 1x1 input projection (default C_in).
        adaptive_b: B from a linear map of the window's other axes (True, the paper's choice)
            or a fixed learned B per channel and state (False: the layer is then linear in x
            apart from the gate; used for ablations and tests).
        gate: the SiLU gate and residual from the window average (A.8.2).
        state_norm: RMS-normalise each window's N states (with a learned gain per state)
            before the gate. The ZOH kernel taps are about dt per axis at initialisation, so
            a d-dim window's states are about dt^d times its content: on band-pass input
            they vanish next to the gate's residual, and the layer passes little but window
            averages. The norm makes what the states say about the window count at any dt.
        dt_init: (min, max) of the log-uniform initialisation of the step sizes.
        implementation: "fast" contracts one axis at a time; "reference" materialises the
            d-dim kernel (the paper's way, for tests and benchmarks).
        chunk_elements: windows are processed in chunks of rows reading about this many input
            elements, and recomputed chunk by chunk in backward, so peak memory stays near
            that of a plain convolution. None: one chunk, autograd keeps every intermediate.
            The chunked backward is first-order only: for second derivatives
            (``create_graph=True``) or ``torch.func.grad``/``vmap`` use None.

    Shapes: input (B, C_in, *S) -> output (B, C_out, *O), O from :func:`conv_output_shape`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        *,
        ndim: int,
        state_size: int = 8,
        hidden_channels: int | None = None,
        adaptive_b: bool = True,
        gate: bool = True,
        state_norm: bool = False,
        dt_init: Sequence[float] = DT_INIT,
        implementation: Implementation = "fast",
        chunk_elements: int | None = 1 << 20,
    ) -> None:
        super().__init__()
        if ndim < 1:
            raise ValueError(f"ndim must be >= 1, got {ndim}")
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = one_per(kernel_size, ndim, "kernel_size")
        self.stride = self.kernel_size if stride is None else one_per(stride, ndim, "stride")
        self.padding = one_per(padding, ndim, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size and stride must be >= 1 and padding >= 0")
        if len(dt_init) != 2 or not DT_RANGE[0] <= dt_init[0] <= dt_init[1] <= DT_RANGE[1]:
            raise ValueError(
                f"dt_init must be (min, max) with {DT_RANGE[0]} <= min <= max <= {DT_RANGE[1]}, "
                f"got {tuple(dt_init)}"
            )
        self.state_size = state_size
        if hidden_channels is not None and hidden_channels < 1:
            raise ValueError(f"hidden_channels must be >= 1, got {hidden_channels}")
        self.hidden_channels = in_channels if hidden_channels is None else hidden_channels
        self.adaptive_b = adaptive_b
        self.gate = gate
        if implementation not in ("fast", "reference"):
            raise ValueError(
                f"implementation must be 'fast' or 'reference', not {implementation!r}"
            )
        self.implementation = implementation
        self.chunk_elements = chunk_elements

        n, c = state_size, self.hidden_channels
        self.in_proj = Pointwise(in_channels, c)
        # lam = -exp(log_neg_lambda), initialised to -(n+1) (A.8.1); one set per axis.
        self.log_neg_lambda = nn.Parameter(torch.log(torch.arange(1, n + 1.0)).repeat(ndim, 1))
        low, high = math.log(dt_init[0]), math.log(dt_init[1])
        self.log_dt = nn.Parameter(torch.empty(ndim, n).uniform_(low, high))  # (d, N)
        if adaptive_b:
            # Axis i: Linear(prod of the other axes' window lengths -> N).
            window = math.prod(self.kernel_size)
            self.b_weight = nn.ParameterList(
                nn.Parameter(torch.randn(window // k, n) / math.sqrt(window // k))
                for k in self.kernel_size
            )
            self.b_bias = nn.Parameter(torch.randn(ndim, n))  # (d, N)
        else:
            self.b_fixed = nn.Parameter(torch.randn(ndim, c, n))  # (d, C, N)
        if gate:
            self.res_proj = Pointwise(c, n)
        # eps on the mean square: states of ~1e-6 RMS and below are not blown up to unit size.
        self.state_norm = ChannelRMSNorm(n, eps=1e-12) if state_norm else None
        self.out_proj = Pointwise(n, out_channels)

    # -- SSM parameters ---------------------------------------------------------------------
    def ssm_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The constrained (lam, dt), each (d, N): lam in -LAMBDA_RANGE, dt in DT_RANGE."""
        # Clamp in log space: exp of a huge raw value would overflow to inf before a clamp,
        # and inf * 0 makes the gradient NaN.
        lam = -torch.exp(self.log_neg_lambda.clamp(*_LOG_LAMBDA_RANGE))
        dt = torch.exp(self.log_dt.clamp(*_LOG_DT_RANGE))
        return lam, dt

    def axis_kernels(
        self, windows: torch.Tensor, batch: int
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-axis kernels for every window, and every window's average.

        Args:
            windows: (P, K_1..K_d) with P = batch * C * prod(O), ordered (b, c, o...).
            batch: B.

        Returns:
            d tensors (P, N, K_i), and (P,) window averages (for the gate). With adaptive B
            the averages ride along the first axis's matmul as one extra column, which saves
            a full pass over the windows forward and backward.
        """
        lam, dt = self.ssm_parameters()
        num_windows = windows.shape[0]
        averages = None
        kernels = []
        for axis, length in enumerate(self.kernel_size):
            coefficients = s3k_coefficients(lam[axis], dt[axis], length).to(windows.dtype)
            if self.adaptive_b:
                b = self._adaptive_b(windows, axis)  # (P, N, K_i) (+1 row on axis 0)
                if axis == 0:
                    averages = b[:, -1].sum(dim=1)  # (P,)
                    b = b[:, :-1]
            else:
                per_channel = self.b_fixed[axis].to(windows.dtype)  # (C, N)
                positions = num_windows // (batch * per_channel.shape[0])
                b = per_channel[None, :, None, :, None].expand(batch, -1, positions, -1, length)
                b = b.reshape(num_windows, self.state_size, length)  # (P, N, K_i)
            kernels.append(coefficients * b)  # (P, N, K_i)
        if averages is None:
            averages = windows.mean(dim=tuple(range(1, self.ndim + 1)))
        return kernels, averages

    def _adaptive_b(self, windows: torch.Tensor, axis: int) -> torch.Tensor:
        """B for axis ``axis`` from the window's other axes: (P, K..) -> (P, N, K_axis).

        For axis 0 one more row is returned: the window sum over the other axes divided by
        the window size, so that summing it over K_0 gives the window average.
        """
        shape = windows.shape[1:]
        before, length = math.prod(shape[:axis]), shape[axis]
        weight = self.b_weight[axis].to(windows.dtype)  # (prod of other axes, N)
        bias = self.b_bias[axis].to(windows.dtype)[None, :, None]  # (1, N, 1)
        if axis == 0:  # contract the trailing axes: one GEMM over (P * K_0) rows
            mean_column = torch.full_like(weight[:, :1], 1.0 / math.prod(shape))
            weight = torch.cat([weight, mean_column], dim=1)  # (Z, N + 1)
            bias = torch.cat([bias, bias.new_zeros(1, 1, 1)], dim=1)
            b = torch.matmul(windows.reshape(windows.shape[0], length, -1), weight)
            return b.transpose(1, 2) + bias  # (P, N + 1, K_0)
        if axis == self.ndim - 1:  # contract the leading axes: W^T broadcast over windows
            grouped = windows.reshape(windows.shape[0], before, length)  # (P, A, K)
            return torch.matmul(weight.transpose(0, 1), grouped) + bias  # (P, N, K)
        grouped = windows.reshape(windows.shape[0], before, length, -1)  # (P, A, K, Z)
        weight = weight.reshape(before, -1, self.state_size)  # (A, Z, N)
        return torch.einsum("pakz,azn->pnk", grouped, weight) + bias  # (P, N, K)

    def _fused_states(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast adaptive-B path: (P, *K) windows -> (P, N) states, (P,) averages.

        Same maths as :meth:`axis_kernels` + :func:`contract_windows`, but every op that
        reads the windows runs in one autograd node with a single gradient buffer
        (:class:`~neurep.nn.window_maps.AdaptiveWindowMaps`).
        """
        lam, dt = self.ssm_parameters()
        coefficients = [
            s3k_coefficients(lam[axis], dt[axis], length).to(flat.dtype)
            for axis, length in enumerate(self.kernel_size)
        ]  # d x (N, K_i)
        bias = self.b_bias.to(flat.dtype)  # (d, N)
        weights = [w.to(flat.dtype) for w in self.b_weight]
        averages, *leading, partial, _, _ = AdaptiveWindowMaps.apply(
            flat, coefficients[-1], bias[-1], *weights
        )
        kernels = [
            (coefficients[axis].t() * (b + bias[axis])).transpose(1, 2)
            for axis, b in enumerate(leading)
        ]  # d-1 x (P, N, K_i), views of (P, K_i, N): the layout the contraction reads
        return contract_leading_axes(partial, kernels), averages

    # -- forward ----------------------------------------------------------------------------
    def extract_windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *O, *K): the windows of an already padded input, as a view."""
        if self.stride == self.kernel_size:
            # Non-overlapping windows: a reshape and a permute, whose backward is free
            # (unfold's backward zero-fills and scatters).
            out_shape = conv_output_shape(
                x.shape[2:], self.kernel_size, self.stride, [0] * self.ndim
            )
            for axis, (count, length) in enumerate(zip(out_shape, self.kernel_size, strict=True)):
                if x.shape[2 + axis] != count * length:
                    x = x.narrow(2 + axis, 0, count * length)
            split = [d for pair in zip(out_shape, self.kernel_size, strict=True) for d in pair]
            x = x.reshape(*x.shape[:2], *split)  # (B, C, O_1, K_1, ..., O_d, K_d)
            order = [0, 1, *range(2, 2 + 2 * self.ndim, 2), *range(3, 3 + 2 * self.ndim, 2)]
            return x.permute(order)
        for axis, (length, step) in enumerate(zip(self.kernel_size, self.stride, strict=True)):
            x = x.unfold(2 + axis, length, step)
        return x

    def forward(self, x: torch.Tensor, *, _padded_chunk: bool = False) -> torch.Tensor:
        """(B, C_in, *S) -> (B, C_out, *O). ``_padded_chunk`` is internal (chunk recompute)."""
        if _padded_chunk:
            return self._forward_windows(x)
        if x.dim() != self.ndim + 2:
            raise ValueError(
                f"S3KConv{self.ndim}d expects input (B, C, {self.ndim} spatial axes), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        if any(self.padding):
            pads = [p for pad in reversed(self.padding) for p in (pad, pad)]
            x = F.pad(x, pads)
        for axis, length in enumerate(self.kernel_size):
            if x.shape[2 + axis] < length:
                raise ValueError(
                    f"S3KConv{self.ndim}d: padded input size {x.shape[2 + axis]} on spatial axis "
                    f"{axis} is smaller than the window {length}"
                )
        chunks = self._row_chunks(x)
        if len(chunks) == 1:
            return self._forward_windows(x)
        named = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        if torch.is_grad_enabled() and (x.requires_grad or named):
            names = tuple(name for name, _ in named)
            return _ChunkedRecompute.apply(self, x, chunks, names, *(p for _, p in named))
        return torch.cat([self._forward_windows(x.narrow(2, a, b - a)) for (a, b), _ in chunks], 2)

    def _row_chunks(self, x: torch.Tensor) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Split the output's first spatial axis so each chunk reads ~chunk_elements inputs.

        Returns [((input_start, input_stop), (output_start, output_stop)), ...] along axis 2.
        """
        length, step = self.kernel_size[0], self.stride[0]
        rows = (x.shape[2] - length) // step + 1
        # Elements of the projected input that one output row reads.
        per_row = x.numel() // x.shape[2] * length * self.hidden_channels // self.in_channels
        rows_per_chunk = (
            rows if self.chunk_elements is None else max(1, self.chunk_elements // max(per_row, 1))
        )
        count = -(-rows // rows_per_chunk)  # ceil: chunks needed
        bounds = [rows * i // count for i in range(count + 1)]  # as even as possible
        return [
            ((start * step, (stop - 1) * step + length), (start, stop))
            for start, stop in itertools.pairwise(bounds)
        ]

    def _forward_windows(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on an already padded input: (B, C_in, *S) -> (B, C_out, *O)."""
        batch = x.shape[0]
        # Windows first, then the 1x1 input map (the two commute): the copy that puts the
        # samples in window order is of the C_in raw channels, not the C projected ones.
        windows = self.extract_windows(x)  # (B, C_in, *O, *K), a view
        out_shape = windows.shape[2 : 2 + self.ndim]
        ordered = windows.reshape(batch, self.in_channels, -1)  # (B, C_in, prod(O) * prod(K))
        flat = self.in_proj(ordered).reshape(-1, *self.kernel_size)  # (P, *K), P = B*C*prod(O)
        if self.adaptive_b and self.implementation == "fast":
            states, averages = self._fused_states(flat)  # (P, N), (P,)
        else:
            kernels, averages = self.axis_kernels(flat, batch)  # d x (P, N, K_i), (P,)
            fast = self.implementation == "fast"
            contract = contract_windows if fast else contract_windows_reference
            states = contract(flat, kernels)  # (P, N)
        states = states.reshape(batch, self.hidden_channels, -1, self.state_size).sum(1)
        states = states.transpose(1, 2).reshape(batch, self.state_size, *out_shape)  # (B,N,*O)
        if self.state_norm is not None:
            states = self.state_norm(states)
        if self.gate:
            residual = self.res_proj(averages.reshape(batch, -1, *out_shape))  # (B, N, *O)
            states = states * F.silu(residual) + residual
        return self.out_proj(states)  # (B, C_out, *O)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, ndim={self.ndim}, "
            f"state_size={self.state_size}, hidden_channels={self.hidden_channels}, "
            f"adaptive_b={self.adaptive_b}, gate={self.gate}, "
            f"state_norm={self.state_norm is not None}, implementation={self.implementation}"
        )


class S3KConv1d(S3KConvNd):
    """:class:`S3KConvNd` with ndim=1: (B, C_in, L) -> (B, C_out, L_out)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=None, padding=0, **kwargs
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, ndim=1, **kwargs)


class S3KConv2d(S3KConvNd):
    """:class:`S3KConvNd` with ndim=2: (B, C_in, H, W) -> (B, C_out, H_out, W_out)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=None, padding=0, **kwargs
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, ndim=2, **kwargs)


class S3KConv3d(S3KConvNd):
    """:class:`S3KConvNd` with ndim=3: (B, C_in, D, H, W) -> (B, C_out, D', H', W')."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=None, padding=0, **kwargs
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, ndim=3, **kwargs)


class _ChunkedRecompute(torch.autograd.Function):
    """Run an S3K layer chunk by chunk and recompute chunks in backward.

    Every output row depends only on its own input rows, so the backward pass can redo one
    chunk at a time: only the input and the parameters are kept between the passes, plus the
    graph of the last chunk, which backward needs first (so it is never recomputed). The
    recompute binds the saved parameters by name (``functional_call``), so it is also right
    under ``torch.func`` transforms that substitute parameters.
    """

    @staticmethod
    def forward(ctx, layer: S3KConvNd, x: torch.Tensor, chunks, names, *params: torch.Tensor):
        ctx.layer, ctx.chunks, ctx.names = layer, chunks, names
        # Inside forward the layer's attributes are exactly ``params`` (also under
        # functional_call, which swaps them in for the call), so it can be called directly.
        ctx.direct = True
        ctx.save_for_backward(x, *params)
        outputs = []
        with torch.no_grad():
            for (a, b), _ in chunks[:-1]:
                outputs.append(layer._forward_windows(x.narrow(2, a, b - a)))
        (a, b), _ = chunks[-1]
        with torch.enable_grad():
            last_input, last_output = _ChunkedRecompute._run(ctx, x, params, a, b)
        ctx.last = (last_input, last_output)
        outputs.append(last_output.detach())
        return torch.cat(outputs, dim=2)

    @staticmethod
    def _run(ctx, x, params, a, b):
        """Forward one chunk with autograd on: (input chunk leaf, output)."""
        chunk = x.narrow(2, a, b - a).detach().requires_grad_(ctx.needs_input_grad[1])
        if ctx.direct:  # the common case: the layer's own parameters, no rebinding
            return chunk, ctx.layer._forward_windows(chunk)
        bound = dict(zip(ctx.names, params, strict=True))
        output = torch.func.functional_call(
            ctx.layer, bound, (chunk,), {"_padded_chunk": True}, strict=False
        )
        return chunk, output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, *params = ctx.saved_tensors
        want_x = ctx.needs_input_grad[1]
        # Backward runs outside any functional_call: if the saved parameters are not the
        # layer's own (torch.func substituted them), recompute with them bound by name.
        own = dict(ctx.layer.named_parameters())
        ctx.direct = all(own.get(n) is p for n, p in zip(ctx.names, params, strict=True))
        # Non-overlapping chunks tile the rows: write each chunk's gradient in place and zero
        # only the rows no window reads. Overlapping chunks must accumulate.
        tiled = all(prev[0][1] == nxt[0][0] for prev, nxt in itertools.pairwise(ctx.chunks))
        grad_x = None
        if want_x:
            grad_x = torch.empty_like(x) if tiled else torch.zeros_like(x)
            covered = ctx.chunks[-1][0][1]
            if tiled and covered < x.shape[2]:
                grad_x.narrow(2, covered, x.shape[2] - covered).zero_()
        grad_params: list[torch.Tensor] | None = None
        for index in range(len(ctx.chunks) - 1, -1, -1):  # the kept last chunk first
            (a, b), (out_a, out_b) = ctx.chunks[index]
            if index == len(ctx.chunks) - 1 and ctx.last is not None:
                chunk, output = ctx.last  # usable once; a second backward recomputes
                ctx.last = None
            else:
                with torch.enable_grad():
                    chunk, output = _ChunkedRecompute._run(ctx, x, params, a, b)
            inputs = ([chunk] if want_x else []) + list(params)
            grads = torch.autograd.grad(
                output,
                inputs,
                grad_output.narrow(2, out_a, out_b - out_a),
                materialize_grads=True,  # unused parameters get zeros, so all lists align
            )
            if want_x:
                target = grad_x.narrow(2, a, b - a)
                if tiled:
                    target.copy_(grads[0])
                else:
                    target.add_(grads[0])
                grads = grads[1:]
            if grad_params is None or not grads:
                grad_params = list(grads)
            else:
                grad_params = list(torch._foreach_add(grad_params, list(grads)))
        return (None, grad_x, None, None, *(grad_params or [None] * len(params)))
