"""Layer-level invariants of S3KConvNd (docs/ARCHITECTURE.md, "The S3K layer"): an independent
loop oracle, fast path = materialised reference (outputs and gradients, chunked or not), unit
windows reduce to 1-D, axis permutation equivariance, linearity without adaptive B, and
stability over the allowed step and eigenvalue ranges."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from s3k_oracle import LayerConfig, constrained, layer_configs, oracle_forward, permuted_layer

from neurep.nn import DT_RANGE, LAMBDA_RANGE, S3KConv1d, S3KConvNd
from neurep.nn.functional import s3k_coefficients, zoh_discretise

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)
TOL = {"rtol": 1e-10, "atol": 1e-11}


def _outputs_and_grads(
    layer: S3KConvNd, x: torch.Tensor, cotangent: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output, and gradients of <output, cotangent> w.r.t. the input and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    out = layer(x)
    if cotangent is None:
        gen = torch.Generator().manual_seed(1234)
        cotangent = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    names = [name for name, _ in layer.named_parameters()]
    grads = torch.autograd.grad(
        (out * cotangent).sum(), [x, *layer.parameters()], allow_unused=True
    )
    return out.detach(), dict(zip(["input", *names], grads, strict=True))


# -- the whole layer against a loop-by-loop re-derivation ---------------------------------------


@settings(max_examples=30, deadline=None)
@given(cfg=layer_configs(max_outputs=2))
def test_layer_matches_window_by_window_recurrence_oracle(cfg: LayerConfig) -> None:
    layer = cfg.build()
    x = cfg.input()
    torch.testing.assert_close(layer(x), oracle_forward(layer, x), **TOL)


# -- fast path = materialised reference ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(cfg=layer_configs())
def test_fast_layer_equals_reference_layer_in_outputs_and_gradients(cfg: LayerConfig) -> None:
    """Same state_dict; fast with the drawn chunking vs reference chunked the same way and
    reference in one piece. Gradients w.r.t. the input and every parameter."""
    fast = cfg.build("fast")
    x = cfg.input()
    out_fast, grads_fast = _outputs_and_grads(fast, x)
    for implementation, chunk in (("reference", cfg.chunk_elements), ("reference", None)):
        other = cfg.build(implementation, chunk_elements=chunk)
        other.load_state_dict(fast.state_dict())
        out, grads = _outputs_and_grads(other, x)
        torch.testing.assert_close(out_fast, out, **TOL)
        assert grads_fast.keys() == grads.keys()
        for name, grad in grads_fast.items():
            assert grad is not None, name
            torch.testing.assert_close(grad, grads[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@settings(max_examples=15, deadline=None)
@given(cfg=layer_configs(chunked=True))
def test_chunking_changes_nothing_in_no_grad_and_grad_modes(cfg: LayerConfig) -> None:
    chunked = cfg.build()
    whole = cfg.build(chunk_elements=None)
    whole.load_state_dict(chunked.state_dict())
    x = cfg.input()
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), whole(x), **TOL)
    # Parameters frozen, input requiring grad: the chunked autograd path with no param grads.
    for layer in (chunked, whole):
        layer.requires_grad_(False)
    x_grad = x.clone().requires_grad_(True)
    (g_chunked,) = torch.autograd.grad(chunked(x_grad).square().sum(), x_grad)
    (g_whole,) = torch.autograd.grad(whole(x_grad).square().sum(), x_grad)
    torch.testing.assert_close(g_chunked, g_whole, **TOL)


# -- a d-dim layer with unit windows on the other axes is the 1-D layer --------------------------


@st.composite
def unit_window_cases(draw: st.DrawFn):
    ndim = draw(st.integers(2, 4))
    axis = draw(st.integers(0, ndim - 1))
    length = draw(st.integers(1, 5))
    stride = draw(st.integers(1, length + 1))
    padding = draw(st.integers(0, 1))
    outputs = draw(st.integers(1, 3))
    size = max(1, (outputs - 1) * stride + length - 2 * padding)
    if size + 2 * padding < length:
        padding = 0
        size = (outputs - 1) * stride + length
    others = [draw(st.integers(1, 3)) for _ in range(ndim - 1)]
    return {
        "ndim": ndim,
        "axis": axis,
        "length": length,
        "stride": stride,
        "padding": padding,
        "size": size,
        "others": others,
        "adaptive_b": draw(st.booleans()),
        "gate": draw(st.booleans()),
        "state_norm": draw(st.booleans()),
        "chunk_elements": draw(st.sampled_from([None, 1, 10])),
        "in_channels": draw(st.integers(1, 3)),
        "hidden": draw(st.integers(1, 3)),
        "state_size": draw(st.integers(1, 4)),
        "seed": draw(seeds),
    }


@settings(max_examples=30, deadline=None)
@given(case=unit_window_cases())
def test_layer_with_unit_windows_on_other_axes_equals_1d_layer_on_every_line(case: dict) -> None:
    """Window (1..K..1): each line along the long axis goes through the 1-D layer.

    Parameter map: the long axis keeps its lam, dt, B (its adaptive-B map already reads
    prod(other windows) = 1 input); every other axis must contribute a kernel of exactly 1,
    i.e. b_bar = (exp(lam dt) - 1)/lam * B = 1 with a zero adaptive weight."""
    d, axis, length = case["ndim"], case["axis"], case["length"]
    kernel = [1] * d
    kernel[axis] = length
    stride = [1] * d
    stride[axis] = case["stride"]
    padding = [0] * d
    padding[axis] = case["padding"]
    spatial = list(case["others"])
    spatial.insert(axis, case["size"])
    common = {
        "state_size": case["state_size"],
        "hidden_channels": case["hidden"],
        "adaptive_b": case["adaptive_b"],
        "gate": case["gate"],
        "state_norm": case["state_norm"],
        "chunk_elements": case["chunk_elements"],
    }
    c_in = case["in_channels"]
    cfg = LayerConfig(
        ndim=d,
        kernel_size=tuple(kernel),
        stride=tuple(stride),
        padding=tuple(padding),
        spatial=tuple(spatial),
        in_channels=c_in,
        out_channels=2,
        hidden_channels=case["hidden"],
        state_size=case["state_size"],
        adaptive_b=case["adaptive_b"],
        gate=case["gate"],
        state_norm=case["state_norm"],
        chunk_elements=case["chunk_elements"],
        seed=case["seed"],
    )
    layer = cfg.build()
    line_layer = S3KConv1d(c_in, 2, length, case["stride"], case["padding"], **common).double()
    lam, dt = constrained(layer)
    unit_b = lam / torch.expm1(lam * dt)  # (d, N): b_bar = 1 on a length-1 axis
    with torch.no_grad():
        for other in range(d):
            if other == axis:
                continue
            if case["adaptive_b"]:
                layer.b_weight[other].zero_()
                layer.b_bias[other].copy_(unit_b[other])
            else:
                layer.b_fixed[other].copy_(unit_b[other].expand_as(layer.b_fixed[other]))
    state = {
        "log_neg_lambda": layer.log_neg_lambda[axis : axis + 1],
        "log_dt": layer.log_dt[axis : axis + 1],
    }
    if case["adaptive_b"]:
        state["b_weight.0"] = layer.b_weight[axis]  # (1, N): the other windows' product is 1
        state["b_bias"] = layer.b_bias[axis : axis + 1]
    else:
        state["b_fixed"] = layer.b_fixed[axis : axis + 1]
    for name, value in layer.state_dict().items():
        if name.startswith(("in_proj", "out_proj", "res_proj", "state_norm")):
            state[name] = value
    line_layer.load_state_dict({k: v.detach().clone() for k, v in state.items()})

    x = cfg.input()  # (B, C_in, *S)
    out = layer(x)  # (B, C_out, *O), unit windows keep the other axes' sizes
    lines = x.movedim(2 + axis, -1)  # (B, C_in, *others, S_axis)
    batch_shape = lines.shape[2:-1]
    flat = lines.movedim(1, -2).reshape(-1, c_in, lines.shape[-1])  # (B*others, C_in, S)
    line_out = line_layer(flat)  # (B*others, C_out, O)
    line_out = line_out.reshape(x.shape[0], *batch_shape, 2, -1).movedim(-2, 1)
    torch.testing.assert_close(out, line_out.movedim(-1, 2 + axis), **TOL)


# -- permuting spatial axes ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(cfg=layer_configs(ndims=(2, 3, 4)), data=st.data())
def test_permuting_axes_and_their_parameters_permutes_the_output(
    cfg: LayerConfig, data: st.DataObject
) -> None:
    perm = tuple(data.draw(st.permutations(range(cfg.ndim))))
    layer = cfg.build()
    moved = permuted_layer(layer, perm)
    x = cfg.input()
    axes = [0, 1, *(2 + a for a in perm)]
    torch.testing.assert_close(moved(x.permute(axes)), layer(x).permute(axes), **TOL)


# -- linearity with a fixed B and no gate --------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    cfg=layer_configs(adaptive_b=False, gate=False, state_norm=False),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
)
def test_layer_without_adaptive_b_or_gate_is_affine_in_its_input(
    cfg: LayerConfig, a: float, b: float
) -> None:
    """f(a x + b y) - f(0) = a (f(x) - f(0)) + b (f(y) - f(0)): in/out projections have biases
    (and zero padding goes through the input projection's bias), so f is affine, not linear."""
    layer = cfg.build()
    x, y = cfg.input(1), cfg.input(2)
    f0 = layer(torch.zeros_like(x))
    lhs = layer(a * x + b * y) - f0
    rhs = a * (layer(x) - f0) + b * (layer(y) - f0)
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    cfg=layer_configs(adaptive_b=False, gate=False, state_norm=True, max_padding=0),
    scale=st.floats(1e-1, 1e2),
)
def test_state_norm_makes_the_linear_layer_blind_to_the_input_scale(
    cfg: LayerConfig, scale: float
) -> None:
    """With fixed B, no gate and no input-projection bias the states are linear in x, so
    RMS-normalised states, and the output, do not change when x is scaled by scale > 0 (the
    point of state_norm: tiny states count as much as large ones). The norm's eps floor is
    the only thing that bends this for tiny states, so it is set to 0 here."""
    layer = cfg.build()
    with torch.no_grad():
        layer.in_proj.bias.zero_()
    layer.state_norm.eps = 0.0
    x = cfg.input()
    torch.testing.assert_close(layer(scale * x), layer(x), **TOL)


@settings(max_examples=20, deadline=None)
@given(cfg=layer_configs(state_norm=True), gain=st.floats(1e-1, 1e3))
def test_normalised_states_have_unit_rms_over_the_states_of_each_window(
    cfg: LayerConfig, gain: float
) -> None:
    """With the norm's gain at 1, what leaves the norm has RMS 1 over N in every window, for
    small and large inputs alike: sqrt(m / (m + 1e-12)) exactly, m the window's mean square
    (an eps that were not tiny would damp small windows)."""
    layer = cfg.build()
    with torch.no_grad():
        layer.state_norm.gain.fill_(1.0)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    layer.state_norm.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
    layer(cfg.input() * gain)
    for states, out in seen:
        mean_square = states.square().mean(dim=1)
        expected = torch.sqrt(mean_square / (mean_square + 1e-12))
        torch.testing.assert_close(out.square().mean(dim=1).sqrt(), expected, **TOL)


@settings(max_examples=20, deadline=None)
@given(cfg=layer_configs(state_norm=True))
def test_state_norm_leaves_all_zero_states_at_zero(cfg: LayerConfig) -> None:
    """Zero input with zeroed input-projection and B biases gives zero states; the eps floor
    keeps them zero (no 0/0), so the output is what the gate's residual branch gives alone."""
    layer = cfg.build()
    with torch.no_grad():
        layer.in_proj.bias.zero_()
        if cfg.adaptive_b:
            layer.b_bias.zero_()
    x = torch.zeros_like(cfg.input())
    reference = cfg.build()
    reference.load_state_dict(layer.state_dict())
    reference.state_norm = None  # states are 0 either way; only the norm's 0/0 could differ
    out = layer(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference(x), **TOL)


@settings(max_examples=10, deadline=None)
@given(cfg=layer_configs(adaptive_b=True, gate=False, state_norm=False, max_padding=0))
def test_adaptive_b_makes_the_layer_depend_nonlinearly_on_its_input(cfg: LayerConfig) -> None:
    """Control for the test above: with input-adaptive B the same identity fails (B depends
    on the window, so the kernel is quadratic in it)."""
    layer = cfg.build()
    x = cfg.input()
    f0 = layer(torch.zeros_like(x))
    response = (layer(x) - f0).abs().max()
    gap = (layer(2 * x) - f0) - 2 * (layer(x) - f0)
    # Relative to the response: a layer that barely responds (1e-3) still has a gap far above
    # float64 rounding, which an absolute 1e-6 floor called linear.
    assert response > 0 and gap.abs().max() > 1e-6 * response


# -- stability over the allowed ranges -----------------------------------------------------------

#: Raw (log-space) parameter values: ordinary ones and ones whose exp over- or underflows.
raw_log = st.one_of(
    st.floats(-40, 40), st.sampled_from([-1e4, -700.0, 700.0, 1e4, -math.inf, math.inf])
)


def _layer_with_raw_ssm_parameters(
    log_lam: list[float], log_dt: list[float], dtype: torch.dtype, length: int
) -> S3KConv1d:
    n = len(log_lam)
    layer = S3KConv1d(2, 3, length, state_size=n).to(dtype)
    with torch.no_grad():
        layer.log_neg_lambda.copy_(torch.tensor(log_lam, dtype=dtype)[None])
        layer.log_dt.copy_(torch.tensor(log_dt[:n], dtype=dtype)[None])
    return layer


@settings(max_examples=40, deadline=None)
@given(
    log_lam=st.lists(raw_log, min_size=1, max_size=4),
    log_dt=st.lists(raw_log, min_size=4, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    length=st.sampled_from([1, 2, 7, 32]),
    seed=seeds,
)
def test_discretised_decay_is_below_one_and_outputs_finite_for_any_raw_parameters(
    log_lam: list[float], log_dt: list[float], dtype: torch.dtype, length: int, seed: int
) -> None:
    layer = _layer_with_raw_ssm_parameters(log_lam, log_dt, dtype, length)
    lam, dt = layer.ssm_parameters()
    lo, hi = LAMBDA_RANGE
    assert torch.all((-lam >= lo * (1 - 1e-6)) & (-lam <= hi * (1 + 1e-6)))
    assert torch.all((dt >= DT_RANGE[0] * (1 - 1e-6)) & (dt <= DT_RANGE[1] * (1 + 1e-6)))
    lam_bar, scale = zoh_discretise(lam[0], dt[0])
    assert lam_bar.dtype == dtype
    assert torch.all(lam_bar.abs() < 1), lam_bar
    assert torch.all(torch.isfinite(scale) & (scale > 0))
    assert torch.all(torch.isfinite(s3k_coefficients(lam[0], dt[0], length)))
    gen = torch.Generator().manual_seed(seed)
    x = (10 * torch.randn(2, 2, 3 * length, generator=gen)).to(dtype).requires_grad_(True)
    out = layer(x)
    assert torch.all(torch.isfinite(out))
    out.square().mean().backward()
    assert torch.all(torch.isfinite(x.grad))
    # Parameter gradients: see the next test for raw values whose exp overflows.
    overflow = math.log(torch.finfo(dtype).max)
    if max(map(abs, log_lam + log_dt[: len(log_lam)])) < overflow:
        for name, param in layer.named_parameters():
            assert torch.all(torch.isfinite(param.grad)), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameter_gradients_stay_finite_when_raw_log_parameters_overflow_exp(
    dtype: torch.dtype,
) -> None:
    layer = _layer_with_raw_ssm_parameters([1e4, 0.0], [0.0, 1e4], dtype, 4)
    layer(torch.randn(1, 2, 8, dtype=dtype)).sum().backward()
    assert torch.all(torch.isfinite(layer.log_neg_lambda.grad))
    assert torch.all(torch.isfinite(layer.log_dt.grad))


def test_decay_is_below_one_at_every_corner_of_the_allowed_ranges() -> None:
    for dtype in (torch.float32, torch.float64):
        lam = -torch.tensor([LAMBDA_RANGE[0], LAMBDA_RANGE[0], LAMBDA_RANGE[1], LAMBDA_RANGE[1]])
        dt = torch.tensor([DT_RANGE[0], DT_RANGE[1], DT_RANGE[0], DT_RANGE[1]])
        lam_bar, scale = zoh_discretise(lam.to(dtype), dt.to(dtype))
        assert torch.all((lam_bar >= 0) & (lam_bar < 1)), (dtype, lam_bar)
        assert torch.all(torch.isfinite(scale) & (scale > 0)), (dtype, scale)
