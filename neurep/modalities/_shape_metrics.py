"""How well a decoded shape matches its input: IoU, occupancy PSNR, Chamfer-L1 and F-score.

Chamfer-L1 and F-score follow Occupancy Networks (Mescheder et al., 2019): ``SURFACE_SAMPLES``
points on each surface, nearest-neighbour Euclidean distances both ways; Chamfer-L1 is the
mean of the two directions' mean distances, F-score the harmonic mean of precision (decoded
points within ``tau`` of the input) and recall (input points within ``tau`` of the decode).
Here ``tau`` is one voxel, and Chamfer is given in world units and divided by the input's
bounding-box diagonal (the "normalised box" of that protocol).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurep.metrics import psnr_from_mse
from neurep.modalities._shape_grid import import_trimesh

__all__ = ["SURFACE_SAMPLES", "iou", "occupancy_psnr", "surface_distances", "surface_samples"]

#: Points sampled on each surface for Chamfer-L1 and F-score (fixed seed: reproducible).
SURFACE_SAMPLES = 20_000
SAMPLE_SEED = 0


def iou(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of two bool grids (1.0 when both are empty)."""
    union = np.logical_or(prediction, reference).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, reference).sum() / union)


def occupancy_psnr(probabilities: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB, peak 1) of occupancy values in [0, 1] against the bool grid: the paper's."""
    mse = float(np.mean((np.asarray(probabilities, np.float64) - reference) ** 2))
    return psnr_from_mse(mse, 1.0)


def surface_samples(mesh: Any = None, points: np.ndarray | None = None) -> np.ndarray | None:
    """``(n, 3)`` points on a mesh's surface (area-weighted, seeded), or a seeded subset of
    ``points``; None when there is nothing to sample (an empty or zero-area mesh)."""
    if mesh is not None and len(mesh.faces) and mesh.area > 0:
        trimesh = import_trimesh()
        samples, _ = trimesh.sample.sample_surface(mesh, SURFACE_SAMPLES, seed=SAMPLE_SEED)
        return np.asarray(samples, dtype=np.float64)
    if mesh is not None:
        points = np.asarray(mesh.vertices) if len(mesh.vertices) else None
    if points is None or len(points) == 0:
        return None
    if len(points) > SURFACE_SAMPLES:
        chosen = np.random.default_rng(SAMPLE_SEED).choice(len(points), SURFACE_SAMPLES, False)
        points = points[np.sort(chosen)]
    return np.asarray(points, dtype=np.float64)


def surface_distances(
    reference: np.ndarray | None, decoded: np.ndarray | None, tau: float, diagonal: float
) -> dict[str, float | None]:
    """Chamfer-L1 (world units and over ``diagonal``) and F-score at ``tau`` between two
    ``(n, 3)`` samples; Chamfer is None and F-score 0 when the decode has no surface."""
    if reference is None or decoded is None:
        return {"chamfer_l1": None, "chamfer_l1_normalised": None, "f_score": 0.0}
    from scipy.spatial import cKDTree

    to_decoded, _ = cKDTree(decoded).query(reference)  # completeness: input -> decode
    to_reference, _ = cKDTree(reference).query(decoded)  # accuracy: decode -> input
    chamfer = 0.5 * (float(np.mean(to_decoded)) + float(np.mean(to_reference)))
    precision = float(np.mean(to_reference <= tau))
    recall = float(np.mean(to_decoded <= tau))
    f_score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    normalised = chamfer / diagonal if diagonal > 0 and math.isfinite(diagonal) else None
    return {"chamfer_l1": chamfer, "chamfer_l1_normalised": normalised, "f_score": f_score}
