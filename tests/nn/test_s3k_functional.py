"""The S3K maths (neurep.nn.functional): Eq. 7 recurrence, ZOH exactness, Theorem 5.1
invertibility, outer-product structure, and the fast contraction against the materialised one.

Every reference here is computed independently of the library (explicit loops, closed-form
integrals, an RK4 ODE solve), in float64.
"""

from __future__ import annotations

import math
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurep.nn import S3KConv1d
from neurep.nn.functional import (
    contract_windows,
    contract_windows_reference,
    materialise_kernel,
    s3k_coefficients,
    s3k_kernel_1d,
    s3k_recurrence_1d,
    zoh_discretise,
)
from neurep.nn.s3k import DT_RANGE, LAMBDA_RANGE

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)


def _ssm(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random lam in [-5, -0.1] and dt in [0.01, 1.5], (N,) each: lam*dt from 1e-3 to 7.5."""
    lam = -(0.1 + 4.9 * torch.rand(n, generator=gen, dtype=F64))
    dt = 0.01 + 1.49 * torch.rand(n, generator=gen, dtype=F64)
    return lam, dt


def _loop_last_state(
    lam: torch.Tensor, dt: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """h_k = exp(lam dt) h_{k-1} + (exp(lam dt) - 1)/lam * b_k * x_k from h_{-1} = 0, written
    out with plain exp (the library uses expm1)."""
    state = torch.zeros(*x.shape[:-1], lam.shape[0], dtype=x.dtype)
    decay = torch.exp(lam * dt)
    scale = (torch.exp(lam * dt) - 1.0) / lam
    for k in range(x.shape[-1]):
        state = decay * state + scale * b[..., k, :] * x[..., k : k + 1]
    return state


# -- Eq. 7: the kernel is the unrolled recurrence ----------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    length=st.integers(1, 12),
    batch=st.lists(st.integers(1, 3), max_size=2),
    seed=seeds,
)
def test_kernel_applied_to_window_equals_last_recurrence_state(
    n: int, length: int, batch: list[int], seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    lam, dt = _ssm(n, gen)
    b = torch.randn(*batch, length, n, generator=gen, dtype=F64)
    x = torch.randn(*batch, length, generator=gen, dtype=F64)

    kernel = s3k_kernel_1d(lam, dt, b)
    assert kernel.shape == (*batch, n, length)
    via_kernel = (kernel * x[..., None, :]).sum(-1)  # (..., N)
    via_library_recurrence = s3k_recurrence_1d(lam, dt, b, x)
    via_loop = _loop_last_state(lam, dt, b, x)

    torch.testing.assert_close(via_library_recurrence, via_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(via_kernel, via_loop, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), length=st.integers(1, 10), seed=seeds)
def test_kernel_entries_are_powers_of_lam_bar_counted_from_the_window_end(
    n: int, length: int, seed: int
) -> None:
    """Eq. 8: K[n, k] = lam_bar^(L-1-k) * b_bar[k, n]; the last sample gets power 0."""
    gen = torch.Generator().manual_seed(seed)
    lam, dt = _ssm(n, gen)
    b = torch.randn(length, n, generator=gen, dtype=F64)
    kernel = s3k_kernel_1d(lam, dt, b)
    for k in range(length):
        expected = torch.exp(lam * dt) ** (length - 1 - k) * (torch.exp(lam * dt) - 1) / lam * b[k]
        torch.testing.assert_close(kernel[:, k], expected, rtol=1e-11, atol=1e-13)


# -- ZOH: the discrete state is the continuous system's exact state ------------------------------


def _exact_state_piecewise_constant(
    lam: torch.Tensor, dt: torch.Tensor, b: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """h(T), T = L dt, of h' = lam h + b(t) x(t), h(0) = 0, with b, x constant on each step:
    h(T) = sum_k b_k x_k * integral_{k dt}^{(k+1) dt} exp(lam (T - s)) ds."""
    length = x.shape[-1]
    total = torch.zeros(lam.shape, dtype=F64)
    end = length * dt
    for k in range(length):
        start, stop = k * dt, (k + 1) * dt
        integral = (torch.exp(lam * (end - start)) - torch.exp(lam * (end - stop))) / lam
        total = total + b[k] * x[k] * integral
    return total


def _rk4_state_piecewise_constant(
    lam: torch.Tensor, dt: torch.Tensor, b: torch.Tensor, x: torch.Tensor, substeps: int = 128
) -> torch.Tensor:
    """The same h(T) by integrating the ODE numerically (classic RK4), no closed form at all."""
    h = torch.zeros(lam.shape, dtype=F64)
    step = dt / substeps
    for k in range(x.shape[-1]):
        drive = b[k] * x[k]
        for _ in range(substeps):
            k1 = lam * h + drive
            k2 = lam * (h + 0.5 * step * k1) + drive
            k3 = lam * (h + 0.5 * step * k2) + drive
            k4 = lam * (h + step * k3) + drive
            h = h + step / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return h


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), length=st.integers(1, 10), seed=seeds)
def test_recurrence_equals_continuous_solution_for_piecewise_constant_input(
    n: int, length: int, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    lam, dt = _ssm(n, gen)
    b = torch.randn(length, n, generator=gen, dtype=F64)  # B may change per step (adaptive B)
    x = torch.randn(length, generator=gen, dtype=F64)

    exact = _exact_state_piecewise_constant(lam, dt, b, x)
    ode = _rk4_state_piecewise_constant(lam, dt, b, x)
    torch.testing.assert_close(ode, exact, rtol=1e-6, atol=1e-9)  # the two references agree

    torch.testing.assert_close(s3k_recurrence_1d(lam, dt, b, x), exact, rtol=1e-9, atol=1e-11)
    via_kernel = (s3k_kernel_1d(lam, dt, b) * x).sum(-1)
    torch.testing.assert_close(via_kernel, exact, rtol=1e-9, atol=1e-11)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), length=st.integers(1, 9), seed=seeds)
def test_1d_layer_state_is_exact_continuous_state_through_its_parametrisation(
    n: int, length: int, seed: int
) -> None:
    """With identity projections, fixed B and no gate, the layer's output is h(T) of the
    continuous system with lam = -exp(log_neg_lambda), dt = exp(log_dt)."""
    gen = torch.Generator().manual_seed(seed)
    layer = S3KConv1d(1, n, length, state_size=n, adaptive_b=False, gate=False).double()
    lam, dt = _ssm(n, gen)
    b = torch.randn(n, generator=gen, dtype=F64)
    with torch.no_grad():
        layer.log_neg_lambda.copy_(torch.log(-lam)[None])
        layer.log_dt.copy_(torch.log(dt)[None])
        layer.b_fixed.copy_(b[None, None])
        layer.in_proj.weight.fill_(1.0)
        layer.in_proj.bias.zero_()
        layer.out_proj.weight.copy_(torch.eye(n, dtype=F64))
        layer.out_proj.bias.zero_()
    x = torch.randn(length, generator=gen, dtype=F64)
    out = layer(x[None, None])  # (1, N, 1)
    exact = _exact_state_piecewise_constant(lam, dt, b.expand(length, n), x)
    torch.testing.assert_close(out[0, :, 0], exact, rtol=1e-9, atol=1e-11)


# -- Theorem 5.1: the window is recoverable from the last state --------------------------------


def _distinct_lambdas(n: int, gen: torch.Generator) -> torch.Tensor:
    """Negative, pairwise at least 0.4 apart."""
    return -(0.3 + 0.6 * torch.arange(n, dtype=F64) + 0.2 * torch.rand(n, generator=gen, dtype=F64))


def _nonzero(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    return sign * (0.5 + 1.5 * torch.rand(shape, generator=gen, dtype=F64))


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 6), surplus=st.integers(0, 3), seed=seeds)
def test_window_is_recovered_from_last_state_when_states_outnumber_samples(
    length: int, surplus: int, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = length + surplus
    lam = _distinct_lambdas(n, gen)
    dt = torch.full((n,), 0.2 + 0.8 * torch.rand((), generator=gen, dtype=F64).item(), dtype=F64)
    b = _nonzero((n,), gen).expand(length, n)  # a fixed B, the theorem's setting
    x = torch.randn(length, generator=gen, dtype=F64)

    state = s3k_recurrence_1d(lam, dt, b, x)  # (N,)
    kernel = s3k_kernel_1d(lam, dt, b)  # (N, L)
    assert torch.linalg.matrix_rank(kernel).item() == length
    recovered = torch.linalg.lstsq(kernel, state[:, None]).solution[:, 0]
    cond = torch.linalg.cond(kernel).item()
    assert torch.linalg.norm(recovered - x) <= 1e-13 * cond * (1 + torch.linalg.norm(x))


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 6), surplus=st.integers(0, 2), seed=seeds)
def test_1d_layer_output_determines_its_window(length: int, surplus: int, seed: int) -> None:
    """End to end: a fixed-B, ungated 1-D layer with identity projections; the window comes
    back from the output through a kernel the test builds itself (Eq. 8)."""
    gen = torch.Generator().manual_seed(seed)
    n = length + surplus
    lam = _distinct_lambdas(n, gen)
    dt = 0.2 + 0.8 * torch.rand(n, generator=gen, dtype=F64)
    b = _nonzero((n,), gen)
    layer = S3KConv1d(1, n, length, state_size=n, adaptive_b=False, gate=False).double()
    with torch.no_grad():
        layer.log_neg_lambda.copy_(torch.log(-lam)[None])
        layer.log_dt.copy_(torch.log(dt)[None])
        layer.b_fixed.copy_(b[None, None])
        layer.in_proj.weight.fill_(1.0)
        layer.in_proj.bias.zero_()
        layer.out_proj.weight.copy_(torch.eye(n, dtype=F64))
        layer.out_proj.bias.zero_()
    windows = torch.randn(3, length, generator=gen, dtype=F64)
    states = layer(windows.reshape(1, 1, -1))[0]  # (N, 3): one state per window
    powers = torch.arange(length - 1, -1, -1, dtype=F64)
    lam_bar = torch.exp(lam * dt)
    kernel = lam_bar[:, None] ** powers * ((lam_bar - 1) / lam * b)[:, None]  # (N, L)
    recovered = torch.linalg.lstsq(kernel, states).solution.T  # (3, L)
    cond = torch.linalg.cond(kernel).item()
    assert torch.linalg.norm(recovered - windows) <= 1e-12 * cond * (1 + torch.linalg.norm(windows))


# -- outer-product structure -------------------------------------------------------------------


@st.composite
def per_axis_kernels(draw: st.DrawFn, ndims: tuple[int, ...] = (1, 2, 3, 4)):
    """(windows (P, K_1..K_d), kernels d x (P|1, N, K_i))."""
    d = draw(st.sampled_from(ndims))
    gen = torch.Generator().manual_seed(draw(seeds))
    p, n = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, {1: 7, 2: 5, 3: 4, 4: 3}[d])) for _ in range(d)]
    kernels = [
        torch.randn(draw(st.sampled_from([1, p])), n, k, generator=gen, dtype=F64) for k in sizes
    ]
    windows = torch.randn(p, *sizes, generator=gen, dtype=F64)
    return windows, kernels


@settings(max_examples=40, deadline=None)
@given(case=per_axis_kernels())
def test_materialised_kernel_is_the_outer_product_of_axis_kernels(case) -> None:
    _, kernels = case
    d = len(kernels)
    letters = string.ascii_lowercase[:d]
    p = max(k.shape[0] for k in kernels)
    spec = ",".join(f"pn{a}" for a in letters) + f"->pn{letters}"
    explicit = torch.einsum(spec, *(k.expand(p, -1, -1) for k in kernels))
    full = materialise_kernel(kernels)
    torch.testing.assert_close(full.expand_as(explicit), explicit, rtol=1e-13, atol=1e-14)
    # Entry by entry on one window and state, as a product of scalars.
    index = tuple(k.shape[2] - 1 for k in kernels)
    product = math.prod(k[-1, -1, i].item() for k, i in zip(kernels, index, strict=True))
    assert full[-1, -1][index].item() == pytest.approx(product, rel=1e-12, abs=1e-14)


@settings(max_examples=30, deadline=None)
@given(case=per_axis_kernels(ndims=(2, 3, 4)))
def test_every_unfolding_of_the_materialised_kernel_has_rank_one(case) -> None:
    _, kernels = case
    full = materialise_kernel(kernels)  # (P|1, N, K_1..K_d)
    d = len(kernels)
    for axis in range(d):
        unfolded = full.movedim(2 + axis, 2).flatten(3)  # (P, N, K_axis, rest)
        singular = torch.linalg.svdvals(unfolded)  # (P, N, min)
        top = singular[..., 0]
        assert torch.all(singular[..., 1:] <= 1e-12 * (1 + top[..., None]))
        # The surviving factor is the axis kernel itself (up to scale): its column space.
        u = torch.linalg.svd(unfolded, full_matrices=False).U[..., 0]  # (P, N, K_axis)
        axis_kernel = kernels[axis].expand(full.shape[0], -1, -1)
        cosine = (u * axis_kernel).sum(-1).abs() / torch.linalg.norm(axis_kernel, dim=-1)
        nonzero = top > 1e-10
        torch.testing.assert_close(cosine[nonzero], torch.ones_like(cosine[nonzero]))


@settings(max_examples=60, deadline=None)
@given(case=per_axis_kernels())
def test_fast_contraction_equals_materialised_contraction(case) -> None:
    windows, kernels = case
    d = len(kernels)
    fast = contract_windows(windows, kernels)
    reference = contract_windows_reference(windows, kernels)
    letters = string.ascii_lowercase[:d]
    p = windows.shape[0]
    spec = f"p{letters}," + ",".join(f"pn{a}" for a in letters) + "->pn"
    explicit = torch.einsum(spec, windows, *(k.expand(p, -1, -1) for k in kernels))
    assert fast.shape == reference.shape == (p, kernels[0].shape[1])
    torch.testing.assert_close(reference, explicit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, explicit, rtol=1e-12, atol=1e-12)


def test_contraction_rejects_kernel_count_that_differs_from_window_axes() -> None:
    with pytest.raises(ValueError, match="window axes"):
        contract_windows(torch.zeros(2, 3, 3), [torch.zeros(1, 2, 3)])


# -- ZOH coefficients --------------------------------------------------------------------------


def test_zoh_scale_stays_accurate_when_lam_dt_is_tiny() -> None:
    """(exp(lam dt) - 1)/lam -> dt as lam dt -> 0; expm1 keeps every digit in float32."""
    lam = torch.tensor([-1e-2, -1e-2], dtype=torch.float32)
    dt = torch.tensor([1e-4, 1e-3], dtype=torch.float32)
    lam_bar, scale = zoh_discretise(lam, dt)
    expected = torch.expm1(lam.double() * dt.double()) / lam.double()
    torch.testing.assert_close(scale.double(), expected, rtol=1e-6, atol=0)
    assert torch.all(lam_bar < 1)


@settings(max_examples=60, deadline=None)
@given(
    log_neg_lambda=st.floats(math.log(LAMBDA_RANGE[0]), math.log(LAMBDA_RANGE[1])),
    log_dt=st.floats(math.log(DT_RANGE[0]), math.log(DT_RANGE[1])),
    length=st.integers(1, 64),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kernel_taps_are_never_subnormal_and_exact_above_epsilon_squared(
    log_neg_lambda: float, log_dt: float, length: int, dtype: torch.dtype
) -> None:
    """Over the layer's whole (lam, dt) range: every tap is 0 or a normal number (CPUs are
    slow on subnormals), and a tap is 0 only where lam_bar ** (L-1-k) < eps ** 2."""
    lam = torch.tensor([-math.exp(log_neg_lambda)], dtype=dtype)
    dt = torch.tensor([math.exp(log_dt)], dtype=dtype)
    taps = s3k_coefficients(lam, dt, length)[0]  # (L,)
    assert torch.all((taps == 0) | (taps.abs() >= torch.finfo(dtype).tiny))
    powers = (lam * dt).double() * torch.arange(length - 1, -1, -1, dtype=F64)
    kept = powers > 2 * math.log(torch.finfo(dtype).eps)
    assert kept[-1]  # the window's last sample always counts
    assert torch.all(taps[~kept] == 0)
    plain = torch.exp(powers) * (torch.expm1(lam.double() * dt.double()) / lam.double())
    torch.testing.assert_close(taps[kept].double(), plain[kept], rtol=1e-5, atol=0)
