"""Tiny 3-D shapes for the shape modality tests, built in code (trimesh, open3d, numpy) and
written with those libraries' own writers (not with neurep, which is under test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d
import trimesh

#: The real meshes and point clouds of the shared data folder.
MESHES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "meshes"


def box(extents=(2.0, 1.0, 1.0), centre=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """A closed (watertight) box of ``extents`` centred on ``centre``."""
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(centre)
    return mesh


def _side_faces(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F,) bool: the faces of a box's +x side (both of its triangles)."""
    high = mesh.vertices[:, 0].max()
    return np.all(np.isclose(mesh.vertices[mesh.faces][:, :, 0], high), axis=1)


def open_box(extents=(2.0, 2.0, 2.0)) -> trimesh.Trimesh:
    """A box with its +x side removed: an open surface, not watertight."""
    closed = box(extents)
    return trimesh.Trimesh(closed.vertices, closed.faces[~_side_faces(closed)], process=False)


def cracked_box(extents=(2.0, 2.0, 2.0), gap: float = 1e-3) -> trimesh.Trimesh:
    """A box whose +x side is a separate quad ``gap`` outside the rest: closed to the eye and
    to a voxel grid, but not watertight (its rim edges have one face each)."""
    closed = box(extents)
    vertices, faces = closed.vertices, closed.faces.copy()
    side = _side_faces(closed)
    moved = np.unique(faces[side])
    renumber = {int(old): len(vertices) + new for new, old in enumerate(moved)}
    faces[side] = np.vectorize(renumber.get)(faces[side])
    extra = vertices[moved] + [gap, 0.0, 0.0]
    return trimesh.Trimesh(np.vstack([vertices, extra]), faces, process=False)


def two_box_scene() -> trimesh.Scene:
    """Two unit cubes under transforms: one moved to x = +4, one turned 90 degrees about z,
    stretched to 3 along its own x (so along world y) and moved to x = -4."""
    scene = trimesh.Scene()
    scene.add_geometry(
        box((1.0, 1.0, 1.0)),
        node_name="moved",
        transform=trimesh.transformations.translation_matrix([4.0, 0.0, 0.0]),
    )
    turn = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
    move = trimesh.transformations.translation_matrix([-4.0, 0.0, 0.0])
    scene.add_geometry(box((3.0, 1.0, 1.0)), node_name="turned", transform=move @ turn)
    return scene


#: World bounds of :func:`two_box_scene`: x from -4.5 to 4.5, y from -1.5 to 1.5.
TWO_BOX_BOUNDS = np.array([[-4.5, -1.5, -0.5], [4.5, 1.5, 0.5]])


def sphere_points(count: int = 400, radius: float = 1.0, seed: int = 0) -> np.ndarray:
    """(count, 3) float64 points on a sphere of ``radius`` about (1, 2, 3)."""
    directions = np.random.default_rng(seed).normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return radius * directions + [1.0, 2.0, 3.0]


def open3d_cloud(points: np.ndarray) -> open3d.geometry.PointCloud:
    return open3d.geometry.PointCloud(open3d.utility.Vector3dVector(np.asarray(points)))


def open3d_box(width=2.0, height=1.0, depth=1.0) -> open3d.geometry.TriangleMesh:
    """open3d's box: corner at the origin, closed."""
    return open3d.geometry.TriangleMesh.create_box(width, height, depth)


def ball_grid(shape=(9, 10, 11), radius: float = 3.0) -> np.ndarray:
    """A bool grid of ``shape``, true inside a ball about its centre."""
    centre = (np.asarray(shape) - 1) / 2
    indices = np.indices(shape).transpose(1, 2, 3, 0)  # (D, H, W, 3)
    return np.linalg.norm(indices - centre, axis=-1) <= radius


def write_mesh(path: Path, mesh: trimesh.Trimesh) -> Path:
    """``mesh`` written by trimesh in the format of ``path``'s suffix."""
    mesh.export(path)
    return path


def write_points(path: Path, points: np.ndarray) -> Path:
    """``points`` as a .ply (no faces) or .xyz (trimesh) or .pcd (open3d) file."""
    if path.suffix == ".pcd":
        assert open3d.io.write_point_cloud(str(path), open3d_cloud(points))
    else:
        trimesh.PointCloud(points).export(path)
    return path
