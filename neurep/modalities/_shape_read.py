"""Reading 3-D inputs: files, trimesh and open3d objects, arrays -> one checked geometry.

Every reader ends in a :class:`Geometry`: a triangle mesh (``vertices``, ``faces``) or a point
set (``points``), in world coordinates, with the ``kind`` that decoding gives back. Problems
with the input are :class:`~neurep.errors.InputError` naming them; a missing library is a
:class:`~neurep.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurep.errors import InputError
from neurep.modalities._scaling import describe
from neurep.modalities._shape_grid import import_open3d, import_trimesh

__all__ = [
    "MESH_EXTENSIONS",
    "POINT_EXTENSIONS",
    "Geometry",
    "as_open3d_mesh",
    "as_trimesh",
    "is_open3d",
    "is_trimesh",
    "ply_has_faces",
    "points_as",
    "points_of",
    "read_geometry",
    "read_npy",
]

#: Mesh files trimesh reads (a .ply without faces is a point cloud).
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
#: Point-cloud files: .pcd through open3d, .xyz through trimesh (and .ply without faces).
POINT_EXTENSIONS = (".pcd", ".xyz")
#: The most bytes of a PLY header read to tell a mesh from a point cloud.
PLY_HEADER_LIMIT = 1 << 16
#: A mesh object given to the points modality decodes to points of the same library.
_POINTS_OF_MESH = {"trimesh": "trimesh_points", "open3d_mesh": "open3d_points"}


@dataclass
class Geometry:
    """One shape in world coordinates.

    kind: what decoding returns by default ("trimesh", "open3d_mesh", "points_array",
        "torch_points", "trimesh_points", "open3d_points").
    vertices (V, 3) float64 and faces (F, 3) int64 for a mesh; points (N, 3) float64 for a
    point set (then vertices/faces are None).
    """

    kind: str
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    points: np.ndarray | None = None
    source: str | None = None
    dtype: str | None = None  # points given as an array: their dtype, restored on decode

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None

    @property
    def coordinates(self) -> np.ndarray:
        """(N, 3): the mesh's vertices or the points."""
        return self.vertices if self.is_mesh else self.points

    def trimesh(self) -> Any:
        """The mesh as a ``trimesh.Trimesh`` (not processed: vertices stay as given)."""
        return import_trimesh().Trimesh(self.vertices, self.faces, process=False)


def is_trimesh(obj: Any, *names: str) -> bool:
    """Whether ``obj`` is a trimesh object of one of the class ``names`` (no import)."""
    return type(obj).__module__.startswith("trimesh.") and type(obj).__name__ in names


def is_open3d(obj: Any, *names: str) -> bool:
    """Whether ``obj`` is an ``open3d.geometry`` object of one of ``names`` (no import)."""
    return type(obj).__module__.startswith("open3d") and type(obj).__name__ in names


def ply_has_faces(path: Path) -> bool:
    """Whether a PLY file's header declares at least one face (reads the header only)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(PLY_HEADER_LIMIT)
    except OSError:
        return True  # let the mesh reader report the problem
    for line in header.split(b"end_header")[0].splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == b"element" and words[1] == b"face":
            return words[2] != b"0"
    return False


def read_geometry(obj: Any, want: str) -> Geometry:
    """``obj`` as a checked Geometry; ``want`` is "mesh" or "points" (the modality)."""
    if isinstance(obj, str | os.PathLike):
        geometry = _read_file(Path(os.fspath(obj)), want)
    elif is_trimesh(obj, "Trimesh"):
        geometry = Geometry("trimesh", np.asarray(obj.vertices), np.asarray(obj.faces))
    elif is_trimesh(obj, "Scene"):
        geometry = _from_scene(obj, "trimesh", want)
    elif is_trimesh(obj, "PointCloud"):
        geometry = Geometry("trimesh_points", points=np.asarray(obj.vertices))
    elif is_open3d(obj, "TriangleMesh"):
        geometry = Geometry(
            "open3d_mesh", np.asarray(obj.vertices), np.asarray(obj.triangles, dtype=np.int64)
        )
    elif is_open3d(obj, "PointCloud"):
        geometry = Geometry("open3d_points", points=np.asarray(obj.points))
    elif isinstance(obj, np.ndarray | torch.Tensor) and want == "points":
        geometry = _from_array(obj)
    else:
        raise InputError(
            f"cannot read {describe(obj)} as a {want}: pass a mesh or point-cloud file, a "
            "trimesh or open3d object, or (with modality='points') an Nx3 array"
        )
    if want == "mesh" and not geometry.is_mesh:
        raise InputError(f"{_what(obj)} is a point cloud, not a mesh; use modality='points'")
    if want == "points" and geometry.is_mesh:  # a mesh's vertices as its points
        kind = "points_array" if geometry.source else _POINTS_OF_MESH[geometry.kind]
        geometry = Geometry(kind, points=geometry.vertices, source=geometry.source)
    _check(geometry, _what(obj))
    return geometry


def _read_file(path: Path, want: str) -> Geometry:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".pcd":
        return _read_pcd(path)
    if suffix == ".npy" and want == "points":  # only with modality="points"
        geometry = _from_array(read_npy(path))
        geometry.source = path.name
        return geometry
    trimesh = import_trimesh()
    try:
        loaded = trimesh.load(path, force=None)
    except Exception as error:  # trimesh raises many kinds for damaged or foreign files
        raise InputError(f"{path}: cannot be read as a 3-D file ({error})") from None
    if is_trimesh(loaded, "Trimesh"):
        geometry = Geometry("trimesh", np.asarray(loaded.vertices), np.asarray(loaded.faces))
    elif is_trimesh(loaded, "PointCloud"):
        geometry = Geometry("points_array", points=np.asarray(loaded.vertices))
    elif is_trimesh(loaded, "Scene"):
        geometry = _from_scene(loaded, "trimesh", want, str(path))
        if not geometry.is_mesh:
            geometry.kind = "points_array"
    else:
        raise InputError(f"{path}: holds a {type(loaded).__name__}, not a mesh or point cloud")
    geometry.source = path.name
    return geometry


def read_npy(path: Path) -> np.ndarray:
    """The array in a ``.npy`` file (never unpickled); InputError if it is not one."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: cannot be read as a .npy array ({error})") from None


def _read_pcd(path: Path) -> Geometry:
    open3d = import_open3d()
    cloud = open3d.io.read_point_cloud(str(path), format="pcd")
    points = np.asarray(cloud.points)
    if points.size == 0:
        raise InputError(f"{path}: open3d read no points from it (empty or not a PCD file)")
    return Geometry("points_array", points=points, source=path.name)


def _from_scene(scene: Any, kind: str, want: str, name: str = "the scene") -> Geometry:
    """A scene's meshes flattened into one in world coordinates (its point clouds if it has
    no mesh, or if ``want`` is "points")."""
    trimesh = import_trimesh()
    parts = scene.dump() if scene.geometry else []  # copies with their transforms applied
    meshes = [part for part in parts if isinstance(part, trimesh.Trimesh) and len(part.faces)]
    clouds = [part for part in parts if isinstance(part, trimesh.PointCloud) and len(part.vertices)]
    if meshes and want == "mesh":
        mesh = trimesh.util.concatenate(meshes)
        return Geometry(kind, np.asarray(mesh.vertices), np.asarray(mesh.faces))
    if clouds or meshes:
        points = np.concatenate([np.asarray(part.vertices) for part in clouds + meshes])
        return Geometry("trimesh_points" if kind == "trimesh" else kind, points=points)
    raise InputError(f"{name} holds no geometry (no mesh and no points)")


def _from_array(values: np.ndarray | torch.Tensor) -> Geometry:
    if isinstance(values, torch.Tensor):
        kind, dtype = "torch_points", str(values.dtype).removeprefix("torch.")
        array = values.detach().cpu()
        array = (array.double() if array.is_floating_point() else array).numpy()
    else:
        kind, dtype, array = "points_array", values.dtype.name, values
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"a point array must be Nx3, got shape {tuple(values.shape)}")
    if array.dtype.kind not in "iuf":
        raise InputError(f"point coordinates must be integers or floats, not {values.dtype}")
    return Geometry(kind, points=array.astype(np.float64), dtype=dtype)


def _check(geometry: Geometry, what: str) -> None:
    coordinates = geometry.coordinates
    noun = "mesh" if geometry.is_mesh else "point cloud"
    if coordinates is None or coordinates.ndim != 2 or coordinates.shape[1:] != (3,):
        raise InputError(f"{what}: its {noun} coordinates are not Nx3")
    if len(coordinates) == 0:
        raise InputError(
            f"{what}: the {noun} is empty (no {'vertices' if geometry.is_mesh else 'points'})"
        )
    if not np.isfinite(coordinates).all():
        bad = int((~np.isfinite(coordinates).all(axis=1)).sum())
        raise InputError(f"{what}: {bad} of its {noun}'s coordinates are NaN or infinite")
    if geometry.is_mesh:
        faces = geometry.faces
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise InputError(f"{what}: the mesh has no triangles (faces {tuple(faces.shape)})")
        if faces.min() < 0 or faces.max() >= len(coordinates):
            raise InputError(f"{what}: a face refers to a vertex the mesh does not have")
        geometry.faces = faces.astype(np.int64)
    geometry.vertices = None if geometry.vertices is None else geometry.vertices.astype(np.float64)
    geometry.points = None if geometry.points is None else geometry.points.astype(np.float64)


def _what(obj: Any) -> str:
    return os.fspath(obj) if isinstance(obj, str | os.PathLike) else describe(obj)


# ---- decodes in the input's container, and back -------------------------------------------


def as_trimesh(obj: Any) -> Any:
    """A mesh decode (trimesh or open3d) as a trimesh.Trimesh; None if ``obj`` is no mesh."""
    if is_trimesh(obj, "Trimesh"):
        return obj
    if is_open3d(obj, "TriangleMesh"):
        return import_trimesh().Trimesh(
            np.asarray(obj.vertices), np.asarray(obj.triangles), process=False
        )
    return None


def points_of(obj: Any) -> np.ndarray:
    """A points decode (array, tensor, trimesh or open3d cloud) as float64 ``(N, 3)``."""
    if is_trimesh(obj, "PointCloud"):
        return np.asarray(obj.vertices, dtype=np.float64)
    if is_open3d(obj, "PointCloud"):
        return np.asarray(obj.points, dtype=np.float64)
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().double().numpy()
    points = np.asarray(obj, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected a mesh, Nx3 points or a grid, got {describe(obj)}")
    return points


def as_open3d_mesh(mesh: Any) -> Any:
    open3d = import_open3d()
    return open3d.geometry.TriangleMesh(
        open3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        open3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )


def points_as(points: np.ndarray, kind: str, dtype: str | None) -> Any:
    """``(N, 3)`` float64 world points in the container the input came in."""
    if kind == "open3d_points":
        open3d = import_open3d()
        return open3d.geometry.PointCloud(open3d.utility.Vector3dVector(points))
    if kind == "trimesh_points":
        return import_trimesh().PointCloud(points)
    # integer coordinates come back as float64: voxel centres are fractional
    if kind == "torch_points":
        floating = torch_float(dtype)
        return torch.from_numpy(points).to(floating or torch.float64)
    if dtype is not None and np.dtype(dtype).kind == "f":
        return points.astype(dtype)
    return points


def torch_float(name: str | None) -> torch.dtype | None:
    """The torch floating dtype called ``name`` ("float32"), or None."""
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None
