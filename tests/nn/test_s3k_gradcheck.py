"""float64 gradcheck of S3KConvNd w.r.t. its input and every parameter (through
torch.func.functional_call), for both implementations, chunked and in one piece."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from s3k_oracle import LayerConfig, layer_configs

from neurep.nn import S3KConvNd, conv_output_shape

CASES = {
    # stride < window: chunks overlap in the input, their input gradients must add up.
    "1d-overlap": LayerConfig(1, (3,), (2,), (1,), (8,)),
    "2d-adaptive": LayerConfig(2, (3, 2), (3, 1), (0, 1), (7, 3)),
    "2d-fixed-b": LayerConfig(2, (2, 3), (1, 3), (1, 0), (3, 6), adaptive_b=False),
    "3d-no-gate": LayerConfig(3, (2, 2, 1), (1, 2, 1), (0, 0, 1), (3, 4, 1), gate=False),
}


def _gradcheck_layer(layer: S3KConvNd, x: torch.Tensor) -> None:
    names = [name for name, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def run(inp: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (inp,))

    x = x.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk_elements", [None, 1], ids=["whole", "row-chunks"])
@pytest.mark.parametrize("implementation", ["fast", "reference"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_gradcheck_input_and_parameters(case: str, implementation: str, chunk_elements) -> None:
    cfg = CASES[case]
    layer = cfg.build(implementation, chunk_elements=chunk_elements)
    rows = conv_output_shape(cfg.spatial, cfg.kernel_size, cfg.stride, cfg.padding)[0]
    assert rows > 1  # with chunk_elements=1, one chunk per output row: several chunks
    _gradcheck_layer(layer, cfg.input())


@settings(max_examples=6, deadline=None)
@given(cfg=layer_configs(ndims=(1, 2, 3), max_outputs=2))
def test_gradcheck_on_random_geometries(cfg: LayerConfig) -> None:
    _gradcheck_layer(cfg.build(), cfg.input())


def _small_chunked_layer() -> tuple[S3KConvNd, torch.Tensor]:
    cfg = CASES["2d-adaptive"]
    return cfg.build(chunk_elements=1), cfg.input()


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="LIMITATION: the chunked recompute computes its backward without a graph, so a "
    "second derivative (create_graph=True, gradient penalties) fails once input is chunked.",
)
def test_chunked_layer_supports_double_backward() -> None:
    layer, x = _small_chunked_layer()
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    torch.autograd.grad(grad.square().sum(), x)


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="LIMITATION: _ChunkedRecompute has no setup_context, so torch.func.grad/vmap fail "
    "as soon as an input is large enough to be chunked (small inputs work).",
)
def test_chunked_layer_works_under_torch_func_grad() -> None:
    layer, x = _small_chunked_layer()
    params = dict(layer.named_parameters())

    def loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(layer, values, (x,)).square().sum()

    torch.func.grad(loss)(params)
