"""The stored configuration of a shape datum and the checks a file's copy must pass.

Shared by the mesh, points and voxels modalities (:mod:`neurep.modalities.shapes`); the
fields are specified in docs/FORMAT.md, section 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurep.errors import FormatError

__all__ = ["DEFAULT_KIND", "MAX_GRID_VOXELS", "ShapeConfiguration", "check_configuration"]

#: The most voxels a stored grid may describe (a 512^3 grid, or a long 1024 x 512^2 one).
MAX_GRID_VOXELS = 1 << 28
#: What each configured kind decodes to when ``decode()`` is given no ``kind``.
DEFAULT_KIND = {
    "trimesh": "mesh",
    "open3d_mesh": "mesh",
    "points_array": "points",
    "torch_points": "points",
    "trimesh_points": "points",
    "open3d_points": "points",
    "numpy_voxels": "voxels",
    "torch_voxels": "voxels",
}
#: The kinds and fills each modality's configuration may hold.
_KINDS = {
    "mesh": ("trimesh", "open3d_mesh"),
    "points": ("points_array", "torch_points", "trimesh_points", "open3d_points"),
    "voxels": ("numpy_voxels", "torch_voxels"),
}
_FILLS = {"mesh": ("solid", "shell"), "points": ("points",), "voxels": ("grid",)}


@dataclass(frozen=True)
class ShapeConfiguration:
    """What a shape datum stores to come back in the user's kind and coordinates.

    kind: the input's container (a key of ``DEFAULT_KIND``); grid_shape: ``[D, H, W]``;
    origin: world coordinates of voxel (0, 0, 0)'s centre; pitch: a voxel's side in world
    units; fill: how the grid was made ("solid", "shell", "points", or "grid" as given);
    bounds: the input's bounding box ``[[x, y, z] low, [x, y, z] high]``; vertices, faces:
    the input's counts (points: vertices = points, faces = 0); dtype: a point array's or
    voxel tensor's dtype name.
    """

    kind: str
    grid_shape: list[int]
    origin: list[float]
    pitch: float
    fill: str
    bounds: list[list[float]]
    vertices: int
    faces: int
    source: str | None = None
    dtype: str | None = None


def _torch_point_dtype(name: str | None) -> bool:
    """Whether ``name`` is a torch integer or floating dtype (what point tensors may be)."""
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return isinstance(dtype, torch.dtype) and (
        dtype.is_floating_point or name.startswith(("int", "uint"))
    )


def check_configuration(config: ShapeConfiguration, name: str) -> None:
    problems = []
    if config.kind not in _KINDS.get(name, ()):
        problems.append(f"unknown kind {config.kind!r}")
    shape = config.grid_shape
    good_shape = len(shape) == 3 and min(shape) >= 1 and math.prod(shape) <= MAX_GRID_VOXELS
    if not good_shape:
        problems.append(f"bad grid_shape {shape}")
    if not _finite_numbers(config.origin, 3):
        problems.append(f"bad origin {config.origin!r:.80}")
    if not (math.isfinite(config.pitch) and config.pitch > 0):
        problems.append(f"bad pitch {config.pitch}")
    elif good_shape and _finite_numbers(config.origin, 3):
        far = [o + config.pitch * (s - 1) for o, s in zip(config.origin, shape, strict=True)]
        if not all(math.isfinite(v) for v in far):  # world coordinates would overflow
            problems.append(f"bad pitch {config.pitch}: the grid's far corner is not finite")
    if config.fill not in _FILLS.get(name, ()):
        problems.append(f"unknown fill {config.fill!r}")
    bounds = config.bounds
    if not (
        isinstance(bounds, list) and len(bounds) == 2 and all(_finite_numbers(b, 3) for b in bounds)
    ) or any(low > high for low, high in zip(*bounds, strict=True)):
        problems.append(f"bad bounds {bounds!r:.80}")
    if config.vertices < 0 or config.faces < 0:
        problems.append("negative vertex or face count")
    if not isinstance(config.source, str | None):
        problems.append(f"bad source {config.source!r:.40}")
    if not isinstance(config.dtype, str | None):
        problems.append(f"bad dtype {config.dtype!r:.40}")
    elif config.kind == "torch_points" and not _torch_point_dtype(config.dtype):
        problems.append(f"bad dtype {config.dtype!r} for torch points")
    elif config.kind == "points_array" and config.dtype is not None:
        try:
            if np.dtype(config.dtype).kind not in "iuf":
                problems.append(f"bad dtype {config.dtype!r} for points")
        except (TypeError, ValueError):
            problems.append(f"unknown dtype {config.dtype!r}")
    if problems:
        raise FormatError(f"{name} modality configuration is malformed: " + "; ".join(problems))


def _finite_numbers(values: Any, count: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == count
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    )
