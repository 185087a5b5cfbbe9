"""The part of an adaptive-B S3K layer that reads the windows, with a hand-written backward.

Every large tensor in the layer is the window tensor ``flat`` (P, K_1..K_d) and its
gradient; everything else is at least K_i/N times smaller. Plain autograd reads ``flat`` in
d+1 separate ops (one adaptive-B map per axis, then the first contraction), keeps a gradient
buffer per op and sums them: d extra window-sized allocations and passes in backward, which
was most of the layer's time and peak memory. :class:`AdaptiveWindowMaps` does those ops in
one autograd node whose backward accumulates every contribution into a single buffer.

Forward, for windows ``x`` viewed per axis (notation of :mod:`neurep.nn.s3k`):

- axis 0 (d >= 2): ``B_0 = x (P*K_1, Z_0) @ W_0``, plus the window average as one extra
  column (``W_0`` gets a constant ``1/prod(K)`` column), kept as (P, K_1, N);
- middle axes: ``B_i[p, n, k] = sum_{a, z} x[p, a, k, z] W_i[a, z, n]``;
- last axis: ``B_d = W_d^T @ x (P, A, K_d)``, ``k_d = coeff * (B_d + bias)`` (P, N, K_d),
  and the first contraction ``partial = x (P, A, K_d) @ k_d^T`` (P, A, N), A = prod(K_1..K_{d-1}).

Returned: the window averages (P,), the raw ``B_i`` of every axis but the last as
(P, K_i, N) (bias not added), and ``partial``. The caller finishes the small remaining
contractions with autograd.
"""

from __future__ import annotations

import math

import torch


def _with_mean_column(weight: torch.Tensor, size: int) -> torch.Tensor:
    """(Z, N) -> (Z, N+1): axis 0's B map plus a constant 1/size column.

    Summed over K_1, that column's output is the window average of a window of ``size``.
    """
    return torch.cat([weight, weight.new_full((weight.shape[0], 1), 1.0 / size)], dim=1)


class AdaptiveWindowMaps(torch.autograd.Function):
    """(flat, coeff_last, bias_last, *weights) -> (averages, *leading_b, partial).

    Args:
        flat: (P, K_1, ..., K_d) windows.
        coeff_last: (N, K_d) the SSM coefficients of the last axis
            (:func:`neurep.nn.functional.s3k_coefficients`).
        bias_last: (N,) the last axis's B bias.
        weights: d tensors, ``weights[i]`` of shape (prod(K)/K_i, N): the adaptive-B maps.

    Returns:
        averages (P,), then d-1 tensors (P, K_i, N) for i < d, then partial (P, A, N), then
        two non-differentiable tensors (P, N, K_d) for backward: the last axis's B (bias
        added) and kernel. A Function can only save what it returns; callers ignore them.
    """

    @staticmethod
    def forward(flat, coeff_last, bias_last, *weights):
        num_windows, window_shape = flat.shape[0], flat.shape[1:]
        ndim, state = len(window_shape), coeff_last.shape[0]
        size = math.prod(window_shape)
        leading: list[torch.Tensor] = []
        if ndim == 1:
            averages = flat.mean(dim=1)
        else:
            length, rest = window_shape[0], size // window_shape[0]
            extended = _with_mean_column(weights[0], size)  # (Z_0, N+1)
            b = torch.mm(flat.reshape(num_windows * length, rest), extended)  # (P*K_1, N+1)
            b = b.reshape(num_windows, length, state + 1)
            averages = b[:, :, state].sum(dim=1)
            leading.append(b[:, :, :state])  # (P, K_1, N)
        for axis in range(1, ndim - 1):
            before, length = math.prod(window_shape[:axis]), window_shape[axis]
            grouped = flat.reshape(num_windows, before, length, -1)  # (P, A, K, Z)
            weight = weights[axis].reshape(before, -1, state)  # (A, Z, N)
            leading.append(torch.einsum("pakz,azn->pkn", grouped, weight))
        length = window_shape[-1]
        grouped = flat.reshape(num_windows, -1, length)  # (P, A, K_d)
        # W^T broadcast as a batched GEMM: matmul would copy the windows transposed first.
        b_last = torch.bmm(weights[-1].t().expand(num_windows, -1, -1), grouped)
        b_last = b_last + bias_last[:, None]  # (P, N, K_d)
        kernel = coeff_last * b_last  # (P, N, K_d)
        partial = torch.bmm(grouped, kernel.transpose(1, 2))  # (P, A, N)
        return (averages, *leading, partial, b_last, kernel)

    @staticmethod
    def setup_context(ctx, inputs, output):
        flat, coeff_last, _, *weights = inputs
        b_last, kernel = output[-2], output[-1]
        ctx.save_for_backward(flat, coeff_last, b_last, kernel, *weights)
        ctx.mark_non_differentiable(b_last, kernel)
        # Unused outputs get None, not window-sized zero tensors filled every step.
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_averages, *grads):
        flat, coeff_last, b_last, kernel, *weights = ctx.saved_tensors
        grad_leading, grad_partial = grads[:-3], grads[-3]
        num_windows, window_shape = flat.shape[0], flat.shape[1:]
        ndim, state = len(window_shape), coeff_last.shape[0]
        size = math.prod(window_shape)
        grad_weights: list[torch.Tensor | None] = [None] * ndim

        # Last axis and the contraction: partial = x @ k^T, k = coeff * (W^T x + bias).
        length = window_shape[-1]
        grouped = flat.reshape(num_windows, -1, length)  # (P, A, K_d)
        if grad_partial is None:
            grad_partial = flat.new_zeros(num_windows, grouped.shape[1], state)
        grad_x = torch.bmm(grad_partial, kernel)  # (P, A, K_d): the one window-sized buffer
        grad_kernel = torch.bmm(grad_partial.transpose(1, 2), grouped)  # (P, N, K_d)
        grad_coeff = (grad_kernel * b_last).sum(dim=0)  # (N, K_d)
        grad_b_last = grad_kernel * coeff_last  # (P, N, K_d)
        grad_bias = grad_b_last.sum(dim=(0, 2))  # (N,)
        last_weight = weights[-1]  # (A, N)
        grad_x.baddbmm_(last_weight.expand(num_windows, -1, -1), grad_b_last)  # += W @ grad_B
        grad_weights[-1] = torch.bmm(grouped, grad_b_last.transpose(1, 2)).sum(dim=0)  # (A, N)
        grad_x = grad_x.reshape(flat.shape)

        for axis in range(1, ndim - 1):
            grad_b = grad_leading[axis]
            if grad_b is None:
                grad_weights[axis] = torch.zeros_like(weights[axis])
                continue
            before, length = math.prod(window_shape[:axis]), window_shape[axis]
            grouped = flat.reshape(num_windows, before, length, -1)  # (P, A, K, Z)
            weight = weights[axis].reshape(before, -1, state)  # (A, Z, N)
            grad_x.add_(torch.einsum("pkn,azn->pakz", grad_b, weight).reshape(flat.shape))
            grad_weights[axis] = torch.einsum("pakz,pkn->azn", grouped, grad_b).reshape(
                weights[axis].shape
            )

        if grad_averages is not None:  # every sample of a window counts 1/size to its average
            grad_x.view(num_windows, size).add_(grad_averages[:, None] / size)
        if ndim > 1:
            length = window_shape[0]
            rows = flat.reshape(num_windows * length, size // length)  # (P*K_1, Z_0)
            grad_b0 = grad_leading[0]
            if grad_b0 is None:
                grad_weights[0] = torch.zeros_like(weights[0])
            else:
                grad_b0 = grad_b0.reshape(num_windows * length, state)  # (P*K_1, N)
                grad_x.view(num_windows * length, -1).addmm_(grad_b0, weights[0].t())
                # (Z_0, N), as the transpose of (N, Z_0): MKL runs that shape 3x faster here
                grad_weights[0] = torch.mm(grad_b0.t(), rows).t()
        return (grad_x, grad_coeff, grad_bias, *grad_weights)
