"""The voxel core shared by the mesh, points and voxels modalities.

A :class:`GridFrame` places a ``D x H x W`` grid in world coordinates: the centre of voxel
``(i, j, k)`` is ``origin + pitch * (i, j, k)`` (axis 0 is world x, 1 is y, 2 is z). Meshes and
point clouds are voxelised in a cube frame around their bounding box (:func:`cube_frame`);
voxelisation and marching cubes are trimesh's and scikit-image's, imported lazily so that
importing this module never fails (:func:`import_trimesh`, :func:`import_skimage_measure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurep.errors import InputError, MissingDependencyError

__all__ = [
    "FILL_CHOICES",
    "GridFrame",
    "cube_frame",
    "enclosed_voxels",
    "grid_to_mesh",
    "import_open3d",
    "import_skimage_measure",
    "import_trimesh",
    "occupied_centres",
    "voxelize_mesh",
    "voxelize_points",
]

#: How a mesh's inside is treated: "auto" fills watertight meshes solid and keeps open ones
#: as a surface shell; "solid" and "shell" force one.
FILL_CHOICES = ("auto", "solid", "shell")
#: The extra that installs every 3-D dependency.
SHAPES_EXTRA = "pip install 'neurep[shapes]'"
#: Extents below this fraction of the coordinates' magnitude are numerically zero.
RELATIVE_EXTENT_FLOOR = 1e-9


def import_trimesh() -> Any:
    """The ``trimesh`` module, or MissingDependencyError naming the extra."""
    try:
        import trimesh
    except ImportError as error:
        raise MissingDependencyError(f"3-D shapes need trimesh: {SHAPES_EXTRA}") from error
    return trimesh


def import_skimage_measure() -> Any:
    """``skimage.measure`` (marching cubes), or MissingDependencyError naming the extra."""
    try:
        from skimage import measure
    except ImportError as error:
        raise MissingDependencyError(
            f"decoding a shape to a mesh needs scikit-image: {SHAPES_EXTRA}"
        ) from error
    return measure


def import_open3d() -> Any:
    """The ``open3d`` module, or MissingDependencyError naming the extra (and, on Debian,
    the system library open3d needs)."""
    try:
        import open3d
    except ImportError as error:
        raise MissingDependencyError(
            f"this needs open3d: {SHAPES_EXTRA} (on Debian/Ubuntu open3d also needs the "
            f"system library libusb-1.0-0: apt-get install libusb-1.0-0) ({error})"
        ) from error
    return open3d


@dataclass(frozen=True)
class GridFrame:
    """Where a grid of ``shape`` voxels sits in world coordinates.

    origin: world coordinates of voxel (0, 0, 0)'s centre; pitch: a voxel's side.
    """

    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    pitch: float

    def to_world(self, indices: np.ndarray) -> np.ndarray:
        """``(N, 3)`` voxel coordinates (may be fractional) -> ``(N, 3)`` world points."""
        return np.asarray(self.origin) + self.pitch * np.asarray(indices, dtype=np.float64)

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` world points -> ``(N, 3)`` fractional voxel coordinates."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) / self.pitch


def cube_frame(low: np.ndarray, high: np.ndarray, resolution: int, margin: int) -> GridFrame:
    """A ``resolution``-cubed frame centred on the box ``[low, high]``, aspect kept: the
    longest side spans voxel centres ``margin`` to ``resolution - 1 - margin``.

    Raises InputError for a box that is not finite or has (numerically) zero extent.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked for below
        extent = float(np.max(high - low))
    magnitude = float(np.max(np.abs(np.concatenate([low, high]))))
    if not (np.isfinite(extent) and np.isfinite(magnitude)):
        raise InputError(
            f"the shape's bounding box ({low.tolist()} to {high.tolist()}) is not finite or "
            "too large for float64"
        )
    if extent <= RELATIVE_EXTENT_FLOOR * max(1.0, magnitude):
        raise InputError(
            f"the shape has zero extent (its bounding box is {low.tolist()} to "
            f"{high.tolist()}); there is nothing to voxelise"
        )
    span = resolution - 1 - 2 * margin
    pitch = extent / span
    origin = low + (high - low) / 2 - pitch * (resolution - 1) / 2
    with np.errstate(over="ignore"):
        far = origin + pitch * (resolution - 1)
    if not np.isfinite(far).all():  # the grid would reach past the float64 limit
        raise InputError(
            f"the shape's bounding box ({low.tolist()} to {high.tolist()}) is too large for float64"
        )
    return GridFrame((resolution,) * 3, tuple(float(v) for v in origin), float(pitch))


def voxelize_mesh(mesh: Any, frame: GridFrame, solid: bool) -> np.ndarray:
    """A trimesh mesh -> ``frame.shape`` bool occupancy: trimesh's surface voxelisation in the
    frame's voxel coordinates, filled (``VoxelGrid.fill``) when ``solid``."""
    if not len(mesh.faces):  # an empty decode: trimesh cannot voxelise nothing
        return np.zeros(frame.shape, dtype=bool)
    # in voxel coordinates, where voxel (i, j, k) has its centre at (i, j, k)
    local = import_trimesh().Trimesh(frame.to_index(mesh.vertices), mesh.faces, process=False)
    local.remove_unreferenced_vertices()  # a stray vertex would stretch trimesh's dense grid
    voxels = local.voxelized(pitch=1.0)
    if solid:
        voxels = voxels.fill()
    offset = np.round(voxels.transform[:3, 3]).astype(np.int64)
    indices = np.argwhere(voxels.matrix) + offset  # (N, 3)
    return _indices_to_grid(indices, frame.shape)


def enclosed_voxels(mesh: Any, frame: GridFrame) -> np.ndarray:
    """A closed trimesh mesh -> ``frame.shape`` bool grid, true where a voxel's centre is
    inside it (open3d's ray casting, the majority of three rays).

    This inverts :func:`grid_to_mesh` exactly: its surface passes between the voxels it
    separates, where a surface voxelisation would also mark the empty voxel beside it.
    """
    if not len(mesh.faces):
        return np.zeros(frame.shape, dtype=bool)
    open3d = import_open3d()
    scene = open3d.t.geometry.RaycastingScene()
    vertices = frame.to_index(mesh.vertices).astype(np.float32)  # voxel coordinates: small
    faces = np.asarray(mesh.faces, dtype=np.uint32)
    scene.add_triangles(open3d.core.Tensor(vertices), open3d.core.Tensor(faces))
    centres = np.indices(frame.shape, dtype=np.float32).reshape(3, -1).T  # (N, 3)
    inside = scene.compute_occupancy(open3d.core.Tensor(centres), nsamples=3).numpy()
    return inside.reshape(frame.shape) > 0.5


def voxelize_points(points: np.ndarray, frame: GridFrame) -> np.ndarray:
    """``(N, 3)`` world points -> ``frame.shape`` bool grid, true where a point falls
    (trimesh's ``points_to_indices``: the nearest voxel centre)."""
    trimesh = import_trimesh()
    indices = trimesh.voxel.ops.points_to_indices(
        np.asarray(points, dtype=np.float64), pitch=frame.pitch, origin=np.asarray(frame.origin)
    )
    return _indices_to_grid(np.asarray(indices, dtype=np.int64), frame.shape)


def _indices_to_grid(indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, 3)`` voxel indices -> a bool grid of ``shape`` (indices outside are dropped)."""
    grid = np.zeros(shape, dtype=bool)
    inside = np.all((indices >= 0) & (indices < np.asarray(shape)), axis=1)
    grid[tuple(indices[inside].T)] = True
    return grid


def occupied_centres(occupancy: np.ndarray, frame: GridFrame, level: float = 0.5) -> np.ndarray:
    """``(N, 3)`` float64 world centres of the voxels whose occupancy is at least ``level``."""
    return frame.to_world(np.argwhere(np.asarray(occupancy) >= level))


def grid_to_mesh(occupancy: np.ndarray, frame: GridFrame, level: float = 0.5) -> Any:
    """Marching cubes (scikit-image) of an occupancy grid at ``level``, as a
    ``trimesh.Trimesh`` in world coordinates, outward-facing; empty if nothing reaches it.

    The grid is padded with one empty voxel a side so that the surface is closed.
    """
    trimesh = import_trimesh()
    values = np.pad(np.asarray(occupancy, dtype=np.float32), 1)
    if not values.max() >= level:
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    measure = import_skimage_measure()
    vertices, faces, _, _ = measure.marching_cubes(values, level=level)
    vertices = vertices - 1.0  # (V, 3) voxel coordinates of the unpadded grid
    # scikit-image's winding depends on the gradient's sign: make the volume positive, in
    # voxel coordinates (in world ones it may overflow); the frame's map keeps the winding
    if trimesh.Trimesh(vertices, faces, process=False).volume < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])
    return trimesh.Trimesh(frame.to_world(vertices), faces, process=False)
