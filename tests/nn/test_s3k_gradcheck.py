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


def _small_layer(chunk_elements: int | None) -> tuple[S3KConvNd, torch.Tensor]:
    cfg = CASES["2d-adaptive"]
    return cfg.build(chunk_elements=chunk_elements), cfg.input()


def test_unchunked_layer_supports_double_backward() -> None:
    """Second derivatives (gradient penalties) need chunk_elements=None, as documented."""
    layer, x = _small_layer(None)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.square().sum(), x)
    assert torch.all(torch.isfinite(second)) and second.abs().sum() > 0


def test_chunked_layer_refuses_double_backward_loudly() -> None:
    """The chunked recompute has no graph of its own: it must fail, never return zeros."""
    layer, x = _small_layer(1)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(grad.square().sum(), x)


def test_unchunked_layer_works_under_torch_func_grad() -> None:
    layer, x = _small_layer(None)
    params = dict(layer.named_parameters())

    def loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(layer, values, (x,)).square().sum()

    grads = torch.func.grad(loss)(params)
    reference = torch.autograd.grad(loss(params), list(params.values()))
    for (name, got), want in zip(grads.items(), reference, strict=True):
        torch.testing.assert_close(got, want, msg=name)
