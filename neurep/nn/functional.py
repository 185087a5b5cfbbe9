"""The maths of the structured state-space kernel (S3K), as plain functions.

Notation (paper §5; docs/ARCHITECTURE.md, "The S3K layer"): a diagonal real SSM with N
states per spatial axis, ``lam`` (N,) < 0, step ``dt`` (N,) > 0, zero-order-hold discretisation

    lam_bar = exp(lam * dt)                 # (N,), in (0, 1)
    b_bar   = (lam_bar - 1) / lam * b       # (..., L, N)

and the 1-D kernel that maps a window of L samples to the last state of the recurrence
``h_k = lam_bar * h_{k-1} + b_bar_k * x_k`` (h_{-1} = 0):

    K[..., n, k] = lam_bar[n] ** (L - 1 - k) * b_bar[..., k, n]

The d-dimensional kernel is the outer product of one 1-D kernel per axis. The fast contraction
:func:`contract_windows` never builds it; :func:`contract_windows_reference` does, for tests.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "contract_leading_axes",
    "contract_windows",
    "contract_windows_reference",
    "materialise_kernel",
    "s3k_coefficients",
    "s3k_kernel_1d",
    "s3k_recurrence_1d",
    "zoh_discretise",
]


def zoh_discretise(lam: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal SSM.

    Args:
        lam: (N,) negative eigenvalues.
        dt: (N,) positive steps.

    Returns:
        ``(lam_bar, b_scale)``, both (N,): ``lam_bar = exp(lam*dt)`` and
        ``b_scale = (lam_bar - 1) / lam`` (so ``b_bar = b_scale * b``), the latter computed
        with ``expm1`` so it stays accurate when ``lam*dt`` is tiny.
    """
    lam_dt = lam * dt  # (N,)
    return torch.exp(lam_dt), torch.expm1(lam_dt) / lam


def s3k_coefficients(lam: torch.Tensor, dt: torch.Tensor, length: int) -> torch.Tensor:
    """(N,), (N,) -> (N, L): ``lam_bar[n] ** (L-1-k) * (lam_bar[n] - 1) / lam[n]``.

    The power is taken as ``exp((L-1-k) * lam * dt)``, which stays differentiable where
    ``lam_bar`` underflows to 0 (``0 ** 0`` has an undefined gradient). Powers below the
    dtype's epsilon squared (float32: ~1e-14) are exactly 0. Next to the window's last tap
    (power 1) they are lost in any sum anyway, and left in they become subnormal numbers
    in the products downstream, on which CPUs compute many times slower (timings:
    benchmarks/RESULTS.md, "S3K layer speed and memory").
    """
    lam_dt = lam * dt  # (N,)
    exponents = torch.arange(length - 1, -1, -1, dtype=lam.dtype, device=lam.device)  # (L,)
    powers = lam_dt[:, None] * exponents  # (N, L), <= 0
    negligible = 2 * math.log(torch.finfo(powers.dtype).eps)  # float32: -31.8
    decay = torch.where(powers > negligible, torch.exp(powers), 0.0)
    return decay * (torch.expm1(lam_dt) / lam)[:, None]


def s3k_kernel_1d(lam: torch.Tensor, dt: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The 1-D S3K kernel.

    Args:
        lam: (N,) negative.
        dt: (N,) positive.
        b: (..., L, N) continuous-time B for each window position.

    Returns:
        K: (..., N, L) with ``K[..., n, k] = exp(lam[n]*dt[n])**(L-1-k)
        * (exp(lam[n]*dt[n]) - 1) / lam[n] * b[..., k, n]``.
    """
    return s3k_coefficients(lam, dt, b.shape[-2]) * b.transpose(-1, -2)  # (..., N, L)


def s3k_recurrence_1d(
    lam: torch.Tensor, dt: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Run the discrete recurrence step by step; the reference for :func:`s3k_kernel_1d`.

    Args:
        lam, dt: (N,).
        b: (..., L, N) continuous-time B per position.
        x: (..., L) the input window.

    Returns:
        (..., N): the last state ``h_{L-1}`` of ``h_k = lam_bar h_{k-1} + b_bar_k x_k``.
    """
    lam_bar, b_scale = zoh_discretise(lam, dt)
    state = torch.zeros(*x.shape[:-1], lam.shape[0], dtype=x.dtype, device=x.device)
    for k in range(x.shape[-1]):
        state = lam_bar * state + b_scale * b[..., k, :] * x[..., k, None]
    return state


def contract_windows(windows: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
    """Apply an outer-product kernel to windows, one axis at a time (the fast path).

    Args:
        windows: (P, K_1, ..., K_d), P independent windows (batch x channels x positions).
        kernels: d tensors, kernels[i] of shape (P, N, K_{i+1}) or (1, N, K_{i+1})
            (broadcast over windows).

    Returns:
        (P, N): ``sum_{k_1..k_d} windows[p, k_1..k_d] * prod_i kernels[i][p, n, k_i]``.

    Memory is O(P * N * K_1 * ... * K_{d-1}), never O(P * N * K_1 * ... * K_d).
    """
    ndim = len(kernels)
    if windows.dim() != ndim + 1:
        raise ValueError(f"windows have {windows.dim() - 1} window axes but {ndim} kernels given")
    num_windows = windows.shape[0]
    window_shape = windows.shape[1:]
    # First contraction (last axis), a batched matmul:
    # (P, K_1..K_{d-1}, K_d) @ (P, K_d, N) -> (P, K_1..K_{d-1}, N)
    last = kernels[-1].transpose(1, 2)  # (P|1, K_d, N)
    partial = torch.matmul(windows.reshape(num_windows, -1, window_shape[-1]), last)
    return contract_leading_axes(partial, kernels[:-1])


def contract_leading_axes(partial: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
    """Finish :func:`contract_windows` once the last window axis is contracted.

    Args:
        partial: (P, K_1 * ... * K_m, N), the windows with their last axis contracted.
        kernels: m tensors (P|1, N, K_i), the kernels of the remaining axes (m may be 0).

    Returns:
        (P, N).
    """
    num_windows = partial.shape[0]
    for kernel in reversed(kernels):
        # partial: (P, K_1..K_i, N); contract K_i against its kernel.
        length = kernel.shape[-1]
        partial = partial.reshape(num_windows, -1, length, partial.shape[-1])  # (P, R, K, N)
        partial = (partial * kernel.transpose(1, 2)[:, None]).sum(dim=2)  # (P, R, N)
    return partial.reshape(num_windows, -1)  # (P, N)


def materialise_kernel(kernels: list[torch.Tensor]) -> torch.Tensor:
    """Outer product of per-axis kernels: d tensors (P, N, K_i) -> (P, N, K_1, ..., K_d)."""
    full = kernels[0]
    for kernel in kernels[1:]:
        full = full[..., None] * kernel.reshape(*kernel.shape[:2], *([1] * (full.dim() - 2)), -1)
    return full


def contract_windows_reference(windows: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
    """Same result as :func:`contract_windows` through the materialised d-dim kernel.

    windows (P, K_1..K_d), kernels[i] (P|1, N, K_i) -> (P, N). Obviously correct, memory-hungry.
    """
    full = materialise_kernel(kernels)  # (P|1, N, K_1, ..., K_d)
    return (windows[:, None] * full).flatten(2).sum(dim=2)  # (P, N)
