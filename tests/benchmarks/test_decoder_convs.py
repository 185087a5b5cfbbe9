"""The GEMM + pixel-shuffle formulation that benchmarks/decoder_convs.py times against
``nn.ConvTranspose2d`` computes the same thing, values and gradients (or its timings would
compare different work). The refinements it times are the decoder's own modules."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import decoder_convs


@settings(max_examples=25, deadline=None)
@given(
    c_in=st.integers(1, 6),
    c_out=st.integers(1, 6),
    stride=st.integers(1, 4),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    batch=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_gemm_shuffle_is_a_transposed_convolution_with_kernel_equal_to_stride(
    c_in, c_out, stride, height, width, batch, seed
):
    torch.manual_seed(seed)
    layer = torch.nn.ConvTranspose2d(c_in, c_out, stride, stride=stride).double()
    x = torch.randn(batch, c_in, height, width, dtype=torch.float64, requires_grad=True)
    expected = layer(x)
    got = decoder_convs.gemm_shuffle(x, layer.weight, layer.bias, stride)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-10)
    grad = torch.randn_like(expected)
    want = torch.autograd.grad(expected, [x, layer.weight], grad)
    have = torch.autograd.grad(got, [x, layer.weight], grad)
    for a, b in zip(want, have, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
