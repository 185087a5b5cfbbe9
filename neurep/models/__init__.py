"""Encoders and decoders, each built from a ``{"name", "configuration"}`` description."""

from neurep.models.decoders import ConvTransposeDecoder, NeRVDecoder
from neurep.models.encoders import ConvNeXtEncoder, LPNetEncoder, level_windows
from neurep.models.pyramid import laplacian_pyramid
from neurep.models.registry import ConfigurableModule, build, register, registered_names

__all__ = [
    "ConfigurableModule",
    "ConvNeXtEncoder",
    "ConvTransposeDecoder",
    "LPNetEncoder",
    "NeRVDecoder",
    "build",
    "laplacian_pyramid",
    "level_windows",
    "register",
    "registered_names",
]
