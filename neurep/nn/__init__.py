"""Layers: the S3K convolution and the blocks LPNet is built from."""

from neurep.nn import functional
from neurep.nn.pointwise import Pointwise
from neurep.nn.s3k import (
    DT_RANGE,
    LAMBDA_RANGE,
    S3KConv1d,
    S3KConv2d,
    S3KConv3d,
    S3KConvNd,
    conv_output_shape,
)

__all__ = [
    "DT_RANGE",
    "LAMBDA_RANGE",
    "Pointwise",
    "S3KConv1d",
    "S3KConv2d",
    "S3KConv3d",
    "S3KConvNd",
    "conv_output_shape",
    "functional",
]
