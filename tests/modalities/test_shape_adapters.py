"""The 3-D shape modalities: meshes, point clouds and voxel grids in, voxelised in a cube frame,
and back to the input's kind (or another); their configurations; the shape metrics."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import open3d
import pytest
import torch
import trimesh
from _shapes import (
    MESHES,
    TWO_BOX_BOUNDS,
    ball_grid,
    box,
    cracked_box,
    open3d_box,
    open3d_cloud,
    open_box,
    sphere_points,
    two_box_scene,
    write_mesh,
    write_points,
)
from adapter_tests import AdapterTests

from neurep.errors import FormatError, InputError
from neurep.modalities import _shape_metrics as metrics
from neurep.modalities import adapter_from_config, resolve
from neurep.modalities._shape_grid import GridFrame, cube_frame, occupied_centres
from neurep.modalities.shapes import MeshAdapter, PointsAdapter, ShapeAdapter, VoxelsAdapter

R = 8  # most tests: a small grid


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(signal: torch.Tensor) -> np.ndarray:
    """A (1, 1, D, H, W) 0/1 signal as a bool (D, H, W) grid."""
    return signal[0, 0].numpy() > 0.5


# ---- every input kind: (build it in tmp_path, modality, decoded type, decoded dtype) --------


def _points_file(suffix: str):
    return lambda folder: write_points(folder / f"cloud{suffix}", sphere_points(200))


def _mesh_file(suffix: str):
    return lambda folder: write_mesh(folder / f"box{suffix}", box())


INPUTS = {
    "trimesh": (lambda _: box(), "mesh", trimesh.Trimesh, None),
    "trimesh-scene": (lambda _: two_box_scene(), "mesh", trimesh.Trimesh, None),
    "open3d-mesh": (lambda _: open3d_box(), "mesh", open3d.geometry.TriangleMesh, None),
    **{f"file{s}": (_mesh_file(s), "mesh", trimesh.Trimesh, None) for s in MeshAdapter.extensions},
    "file.ply-points": (_points_file(".ply"), "points", np.ndarray, np.float64),
    "file.xyz": (_points_file(".xyz"), "points", np.ndarray, np.float64),
    "file.pcd": (_points_file(".pcd"), "points", np.ndarray, np.float64),
    "trimesh-points": (
        lambda _: trimesh.PointCloud(sphere_points()),
        "points",
        trimesh.PointCloud,
        None,
    ),
    "open3d-points": (
        lambda _: open3d_cloud(sphere_points()),
        "points",
        open3d.geometry.PointCloud,
        None,
    ),
    "numpy-float64": (lambda _: sphere_points(), "points", np.ndarray, np.float64),
    "numpy-float32": (
        lambda _: sphere_points().astype(np.float32),
        "points",
        np.ndarray,
        np.float32,
    ),
    "numpy-int16": (
        lambda _: (sphere_points() * 10).astype(np.int16),
        "points",
        np.ndarray,
        np.float64,  # voxel centres are fractional
    ),
    "torch-float32": (
        lambda _: torch.from_numpy(sphere_points()).float(),
        "points",
        torch.Tensor,
        torch.float32,
    ),
    "torch-float64": (
        lambda _: torch.from_numpy(sphere_points()),
        "points",
        torch.Tensor,
        torch.float64,
    ),
    "torch-int32": (
        lambda _: torch.from_numpy(sphere_points() * 10).int(),
        "points",
        torch.Tensor,
        torch.float64,
    ),
    "numpy-voxels": (lambda _: ball_grid(), "voxels", np.ndarray, np.bool_),
    "torch-voxels": (lambda _: torch.from_numpy(ball_grid()), "voxels", torch.Tensor, torch.bool),
}
ARRAY_POINTS = {"numpy-float64", "numpy-float32", "numpy-int16", "torch-float32", "torch-float64"}
ARRAY_POINTS |= {"torch-int32"}


def _read(obj, modality: str, resolution: int = R):
    cls = resolve(obj, modality)
    return (
        cls.from_object(obj)
        if modality == "voxels"
        else cls.from_object(obj, resolution=resolution)
    )


@pytest.mark.parametrize("name", list(INPUTS))
def test_every_input_kind_is_resolved_to_its_modality(name, tmp_path):
    build, modality, _, _ = INPUTS[name]
    obj = build(tmp_path)
    if name in ARRAY_POINTS:  # plain arrays are points only when asked for
        assert resolve(obj) is not PointsAdapter  # an image or an array
        assert resolve(obj, "points") is PointsAdapter
    else:
        assert resolve(obj).name == modality


@pytest.mark.parametrize("name", list(INPUTS))
def test_every_input_kind_decodes_to_its_own_kind(name, tmp_path):
    build, modality, container, dtype = INPUTS[name]
    obj = build(tmp_path)
    adapter, signal = _read(obj, modality)
    decoded = adapter.from_signal(signal)
    assert type(decoded) is container
    grid = _grid(signal)
    if modality == "points":  # the occupied voxels' centres, in the input's dtype
        values = decoded
        if isinstance(decoded, trimesh.PointCloud):
            values = decoded.vertices
        elif isinstance(decoded, open3d.geometry.PointCloud):
            values = decoded.points
        elif dtype is not None:
            assert decoded.dtype == dtype
        centres = adapter.frame.to_world(np.argwhere(grid))
        np.testing.assert_allclose(np.asarray(values, np.float64), centres, rtol=1e-6, atol=1e-6)
    elif modality == "voxels":
        assert decoded.dtype == dtype and tuple(decoded.shape) == tuple(obj.shape)
        assert np.array_equal(np.asarray(decoded), np.asarray(obj))
    elif isinstance(decoded, open3d.geometry.TriangleMesh):
        assert len(decoded.triangles) > 0 and decoded.is_watertight()
    else:
        assert len(decoded.faces) > 0 and decoded.volume > 0


@pytest.mark.parametrize(
    "name", ["trimesh", "open3d-mesh", "file.pcd", "torch-float32", "torch-voxels"]
)
def test_decode_kind_gives_a_mesh_points_or_a_grid_whatever_the_input(name, tmp_path):
    build, modality, _, _ = INPUTS[name]
    adapter, signal = _read(build(tmp_path), modality)
    grid = _grid(signal)
    mesh = adapter.from_signal(signal, kind="mesh")
    points = adapter.from_signal(signal, kind="points")
    voxels = adapter.from_signal(signal, kind="voxels")
    assert type(mesh) is trimesh.Trimesh and mesh.volume > 0
    assert type(points) is np.ndarray and points.dtype == np.float64 and points.shape[1:] == (3,)
    np.testing.assert_array_equal(points, adapter.frame.to_world(np.argwhere(grid)))
    assert type(voxels) is np.ndarray and voxels.dtype == bool
    np.testing.assert_array_equal(voxels, grid)
    for bad in ("pointcloud", "Mesh", ""):
        with pytest.raises(ValueError, match="kind"):
            adapter.from_signal(signal, kind=bad)


# ---- the behaviour every adapter shares ------------------------------------------------------


class ShapeAdapterTests(AdapterTests):
    """AdapterTests for 0/1 occupancy signals: exact round trips, IoU and occupancy PSNR."""

    def signature(self, obj):
        if isinstance(obj, np.ndarray | torch.Tensor):  # points: (N, 3); grids: their shape
            shape = tuple(obj.shape) if obj.ndim == 3 else tuple(obj.shape[1:])
            return (type(obj), shape, str(obj.dtype))
        return (type(obj), (), "")

    def foreign_objects(self):
        return [*super().foreign_objects(), "photo.png", np.zeros((4, 4, 3), np.uint8)]

    def fit_identity(self, original):
        """from_object on a 16-voxel grid (voxel grids keep theirs), then from_signal."""
        options = {} if self.adapter_cls is VoxelsAdapter else {"resolution": 16}
        adapter, signal = self.adapter_cls.from_object(original, **options)
        return adapter, signal, adapter.from_signal(signal)

    def test_round_trip_restores_values(self, case):
        adapter, signal, decoded = self.fit_identity(case)
        # the input voxelised in the datum's frame is the signal, and so is every decode's
        np.testing.assert_array_equal(adapter.as_array(case), signal.double().numpy())
        np.testing.assert_array_equal(adapter.from_signal(signal, kind="voxels"), _grid(signal))
        quality = adapter.quality(case, decoded)
        assert quality["iou"] == 1.0 and quality["occupancy_psnr"] == math.inf

    def test_signal_uses_the_whole_unit_range_unless_constant(self, case):
        _, signal = self.adapter_cls.from_object(case)
        assert set(torch.unique(signal).tolist()) <= {0.0, 1.0}
        assert signal.max() == 1.0 and signal.min() == 0.0  # an object with empty space about it

    def test_from_signal_clips_to_the_recorded_range(self, case):
        adapter, signal = self.adapter_cls.from_object(case)
        overshoot = signal * 3.0 - 1.0  # values in [-1, 2]
        np.testing.assert_array_equal(adapter.from_signal(overshoot, kind="voxels"), _grid(signal))
        assert adapter.as_array(adapter.from_signal(overshoot)).max() <= 1.0

    def test_quality_is_infinite_for_identity_and_finite_after_noise(self, case):
        adapter, signal, decoded = self.fit_identity(case)
        exact = adapter.quality(case, decoded)
        assert exact["psnr"] == exact["occupancy_psnr"] == math.inf and exact["iou"] == 1.0
        generator = torch.Generator().manual_seed(0)
        noisy = signal + 0.4 * torch.randn(signal.shape, generator=generator)
        noisy[..., 0] = 1 - signal[..., 0]  # surely changes some voxels
        worse = adapter.quality(case, adapter.from_signal(noisy))
        assert math.isfinite(worse["psnr"]) and worse["iou"] < 1.0

    def test_malformed_config_raises_format_error(self, case):
        adapter, _ = self.adapter_cls.from_object(case)
        config = adapter.to_config()
        for key in list(config["configuration"]):
            broken = json.loads(json.dumps(config))
            del broken["configuration"][key]
            with pytest.raises(FormatError, match=key):
                self.adapter_cls.from_config(broken)
        with pytest.raises(FormatError):
            self.adapter_cls.from_config({"name": "someone-else", "configuration": {}})
        broken = json.loads(json.dumps(config))
        broken["configuration"]["grid_shape"] = [0, 4, 4]
        with pytest.raises(FormatError, match="grid_shape"):
            self.adapter_cls.from_config(broken)


class TestMeshAdapter(ShapeAdapterTests):
    adapter_cls = MeshAdapter

    @pytest.fixture(params=["trimesh", "open3d-mesh", "file.obj"])
    def case(self, request, tmp_path):
        return INPUTS[request.param][0](tmp_path)

    def expected_signature(self, original):
        if isinstance(original, open3d.geometry.TriangleMesh):
            return (open3d.geometry.TriangleMesh, (), "")
        return (trimesh.Trimesh, (), "")

    def invalid_inputs(self):
        return [trimesh.Trimesh(), trimesh.Scene(), np.zeros((5, 3)), "absent.obj", object()]


class TestPointsAdapter(ShapeAdapterTests):
    adapter_cls = PointsAdapter

    @pytest.fixture(params=["numpy-float32", "torch-float64", "open3d-points", "file.pcd"])
    def case(self, request, tmp_path):
        return INPUTS[request.param][0](tmp_path)

    def expected_signature(self, original):
        if isinstance(original, Path):
            return (np.ndarray, (3,), "float64")
        return self.signature(original)

    def test_accepts_its_inputs(self, case):  # arrays and tensors: only when asked for
        arrays = isinstance(case, np.ndarray | torch.Tensor)
        assert PointsAdapter.accepts(case) is not arrays
        assert resolve(case, "points") is PointsAdapter

    def invalid_inputs(self):
        return [
            np.zeros((0, 3)),
            np.zeros((5, 2)),
            torch.zeros(4, 3, 3),
            open3d_cloud(np.zeros((0, 3))),
        ]


class TestVoxelsAdapter(ShapeAdapterTests):
    adapter_cls = VoxelsAdapter

    @pytest.fixture(params=["numpy-voxels", "torch-voxels"])
    def case(self, request, tmp_path):
        return INPUTS[request.param][0](tmp_path)

    def invalid_inputs(self):
        return [np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4, 4), bool), np.zeros((4, 4), bool)]

    def foreign_objects(self):
        return [*super().foreign_objects(), np.zeros((4, 4, 4), np.float32), torch.zeros(2, 2, 2)]


# ---- voxelisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_a_box_is_centred_with_its_longest_side_spanning_all_but_the_margin(resolution):
    adapter, signal = MeshAdapter.from_object(box((2.0, 1.0, 1.0)), resolution=resolution)
    assert signal.shape == (1, 1, resolution, resolution, resolution)
    assert signal.dtype == torch.float32
    grid = _grid(signal)
    xs, ys, zs = (np.flatnonzero(grid.any(axis=other)) for other in [(1, 2), (0, 2), (0, 1)])
    assert xs.tolist() == list(range(1, resolution - 1))  # one empty voxel at each end
    for occupied in (ys, zs):  # the short sides: centred, about half as long
        assert occupied.min() + occupied.max() == resolution - 1
        assert abs(len(occupied) - (resolution - 3) / 2) <= 2
    frame = adapter.frame
    assert frame.pitch == pytest.approx(2.0 / (resolution - 3))
    np.testing.assert_allclose(
        frame.to_world(np.full((1, 3), (resolution - 1) / 2)), [[0, 0, 0]], atol=1e-12
    )


def test_the_default_grid_is_32_and_a_thin_box_voxelises_at_128():
    assert MeshAdapter.from_object(box())[1].shape == (1, 1, 32, 32, 32)
    _, signal = MeshAdapter.from_object(box((2.0, 0.1, 0.1)), resolution=128)
    assert signal.shape == (1, 1, 128, 128, 128)
    grid = _grid(signal)
    assert grid[1:127].any(axis=(1, 2)).all() and not grid[[0, 127]].any()
    assert grid[64, 64, 64]  # filled solid


def test_a_watertight_mesh_is_filled_and_an_open_one_is_a_shell():
    centre = (R - 1) // 2, R // 2  # the two middle voxels along each axis
    middle = (slice(*[centre[0], centre[1] + 1]),) * 3
    closed, signal = MeshAdapter.from_object(box((2.0, 2.0, 2.0)), resolution=R)
    assert closed.configuration.fill == "solid" and _grid(signal)[middle].all()
    opened, signal = MeshAdapter.from_object(open_box(), resolution=R)
    assert opened.configuration.fill == "shell" and not _grid(signal)[middle].any()
    assert _grid(signal).sum() > 0


def test_fill_forces_solid_or_shell():
    centre = (slice(R // 2 - 1, R // 2 + 1),) * 3
    cracked = cracked_box()  # closed to the grid, not watertight
    auto, signal = MeshAdapter.from_object(cracked, resolution=R)
    assert auto.configuration.fill == "shell" and not _grid(signal)[centre].any()
    solid, signal = MeshAdapter.from_object(cracked, resolution=R, fill="solid")
    assert solid.configuration.fill == "solid" and _grid(signal)[centre].all()
    shell, signal = MeshAdapter.from_object(box((2.0, 2.0, 2.0)), resolution=R, fill="shell")
    assert shell.configuration.fill == "shell" and not _grid(signal)[centre].any()
    assert _grid(signal).sum() > 0


@pytest.mark.parametrize("scale", [1e-6, 1e6, 1e200])
def test_a_closed_mesh_is_filled_at_any_scale_and_offset(scale):
    cube = box((2.0, 2.0, 2.0))
    mesh = trimesh.Trimesh(cube.vertices * scale + 3 * scale, cube.faces, process=False)
    reference = _grid(MeshAdapter.from_object(cube, resolution=R)[1])
    adapter, signal = MeshAdapter.from_object(mesh, resolution=R)
    assert adapter.configuration.fill == "solid"
    np.testing.assert_array_equal(_grid(signal), reference)  # the same voxels as at scale 1
    assert adapter.configuration.pitch == pytest.approx(2 * scale / (R - 3))


def test_a_stray_vertex_changes_neither_the_grid_nor_the_bounds():
    cube = box((2.0, 2.0, 2.0))
    far = [[100.0, 100.0, 100.0]]  # used by no face
    stray = trimesh.Trimesh(np.vstack([cube.vertices, far]), cube.faces, process=False)
    tracemalloc.start()
    try:
        adapter, signal = MeshAdapter.from_object(stray, resolution=R)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # no dense grid stretched out to the stray vertex (80 MB; 300: 2 GB)
    np.testing.assert_allclose(adapter.configuration.bounds, [[-1, -1, -1], [1, 1, 1]])
    assert adapter.configuration.vertices == 9
    np.testing.assert_array_equal(signal, MeshAdapter.from_object(cube, resolution=R)[1])


def test_each_point_marks_the_voxel_nearest_it():
    points = sphere_points(300)
    adapter, signal = PointsAdapter.from_object(points, resolution=16)
    indices = np.round(adapter.frame.to_index(points)).astype(int)  # (N, 3)
    expected = np.zeros((16, 16, 16), bool)
    expected[tuple(indices.T)] = True
    np.testing.assert_array_equal(_grid(signal), expected)
    assert indices.min() == 1 and indices.max() == 14  # the margin, on the sphere's poles
    assert adapter.configuration.fill == "points" and adapter.configuration.vertices == 300


def test_a_scene_is_flattened_in_world_coordinates():
    adapter, signal = MeshAdapter.from_object(two_box_scene(), resolution=16)
    config = adapter.configuration
    np.testing.assert_allclose(config.bounds, TWO_BOX_BOUNDS, atol=1e-9)
    assert config.vertices == 16 and config.faces == 24  # both boxes
    frame = adapter.frame
    occupied = frame.to_world(np.argwhere(_grid(signal)))  # (N, 3) voxel centres
    # the moved cube about x = 4, the turned one (long along y) about x = -4, nothing between
    assert np.abs(occupied[:, 0]).min() > 3.0
    left, right = occupied[occupied[:, 0] < 0], occupied[occupied[:, 0] > 0]
    assert np.abs(right.mean(axis=0) - [4.0, 0.0, 0.0]).max() < frame.pitch
    assert np.abs(left.mean(axis=0) - [-4.0, 0.0, 0.0]).max() < frame.pitch
    assert np.ptp(left[:, 1]) > 2 * np.ptp(right[:, 1])
    decoded = adapter.from_signal(signal)
    np.testing.assert_allclose(decoded.bounds, TWO_BOX_BOUNDS, atol=frame.pitch)


def test_the_frame_maps_voxel_centres_to_world_points_and_back():
    frame = cube_frame(np.array([-1.0, 5.0, 2.0]), np.array([3.0, 6.0, 2.5]), 16, 1)
    indices = np.argwhere(np.ones((16, 16, 16), bool)).astype(np.float64)
    world = frame.to_world(indices)
    np.testing.assert_allclose(frame.to_index(world), indices, atol=1e-9)
    points = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    np.testing.assert_allclose(frame.to_world(frame.to_index(points)), points, atol=1e-9)
    # the box's longest side (x, 4 long) spans centres 1 to 14; centred on (1, 5.5, 2.25)
    np.testing.assert_allclose(world.min(axis=0) + world.max(axis=0), 2 * np.array([1, 5.5, 2.25]))
    assert frame.to_world(np.array([[1.0, 0, 0]]))[0, 0] == pytest.approx(-1.0)
    assert frame.to_world(np.array([[14.0, 0, 0]]))[0, 0] == pytest.approx(3.0)


def test_a_voxel_grid_keeps_its_own_shape_and_index_coordinates():
    grid = ball_grid((5, 7, 9), radius=2.0)
    adapter, signal = VoxelsAdapter.from_object(grid)
    assert signal.shape == (1, 1, 5, 7, 9)
    assert adapter.frame == GridFrame((5, 7, 9), (0.0, 0.0, 0.0), 1.0)
    np.testing.assert_array_equal(adapter.from_signal(signal, kind="points"), np.argwhere(grid))


# ---- decoding --------------------------------------------------------------------------------


def test_marching_cubes_meshes_face_outwards():
    grid = ball_grid((12, 12, 12), radius=4.5) & ~ball_grid((12, 12, 12), radius=2.0)  # hollow
    adapter, signal = VoxelsAdapter.from_object(grid)
    mesh = adapter.from_signal(signal, kind="mesh")
    assert mesh.volume > 0
    normals = mesh.face_normals
    outward = mesh.triangles_center - (np.array(grid.shape) - 1) / 2
    outer = np.linalg.norm(outward, axis=1) > 3.5
    assert (np.sum(normals[outer] * outward[outer], axis=1) > 0).all()  # away from the centre
    assert (np.sum(normals[~outer] * outward[~outer], axis=1) < 0).all()  # into the cavity


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e300])
def test_marching_cubes_meshes_face_outwards_at_any_scale(scale):
    cube = box((2.0, 2.0, 2.0))
    mesh = trimesh.Trimesh(cube.vertices * scale, cube.faces, process=False)
    adapter, signal = MeshAdapter.from_object(mesh, resolution=R)
    decoded = adapter.from_signal(signal)
    assert np.isfinite(decoded.vertices).all()
    local = trimesh.Trimesh(adapter.frame.to_index(decoded.vertices), decoded.faces)
    assert local.volume > 0  # measured in voxels: in world units 1e300 cubed overflows


def _file_modality(path: Path) -> str:
    return "points" if path.name in ("bun000.ply", "lamppost.pcd") else "mesh"


@pytest.mark.parametrize("path", sorted(MESHES.iterdir()), ids=lambda path: path.name)
def test_real_files_decode_within_one_voxel_of_their_bounds(path):
    cls = resolve(path)
    assert cls.name == _file_modality(path)
    adapter, signal = cls.from_object(path, resolution=32)
    config = adapter.configuration
    assert signal.shape == (1, 1, 32, 32, 32) and config.source == path.name
    low, high = np.array(config.bounds)
    decoded = adapter.from_signal(signal)
    if cls is MeshAdapter:
        assert isinstance(decoded, trimesh.Trimesh) and decoded.volume > 0
        decoded_low, decoded_high = decoded.bounds
        slack = config.pitch  # marching cubes: half a voxel past the voxel within half of it
    else:
        assert isinstance(decoded, np.ndarray) and decoded.dtype == np.float64
        decoded_low, decoded_high = decoded.min(axis=0), decoded.max(axis=0)
        slack = config.pitch / 2  # each point's voxel centre is within half a voxel of it
    assert np.abs(decoded_low - low).max() <= slack * (1 + 1e-9), (decoded_low, low)
    assert np.abs(decoded_high - high).max() <= slack * (1 + 1e-9), (decoded_high, high)


def test_the_real_data_folder_holds_meshes_and_point_clouds():
    names = {path.name for path in MESHES.iterdir()}
    assert {"Duck.glb", "bun000.ply", "lamppost.pcd", "teapot.stl", "gargo.off"} <= names


# ---- configuration ---------------------------------------------------------------------------


def _configs() -> dict[str, dict]:
    return {
        "mesh": MeshAdapter.from_object(box(), resolution=R)[0].to_config(),
        "torch-points": PointsAdapter.from_object(torch.rand(30, 3), resolution=R)[0].to_config(),
        "numpy-points": PointsAdapter.from_object(np.random.rand(30, 3), resolution=R)[
            0
        ].to_config(),
        "voxels": VoxelsAdapter.from_object(ball_grid())[0].to_config(),
    }


def test_every_configuration_survives_json_and_decodes_the_same():
    for name, config in _configs().items():
        rebuilt = adapter_from_config(json.loads(json.dumps(config, allow_nan=False)))
        assert isinstance(rebuilt, ShapeAdapter) and rebuilt.to_config() == config, name
        signal = torch.rand(rebuilt.signal_shape(), generator=torch.Generator().manual_seed(1))
        again = adapter_from_config(config)
        np.testing.assert_array_equal(
            rebuilt.from_signal(signal, kind="points"), again.from_signal(signal, kind="points")
        )


@pytest.mark.parametrize(
    ("which", "field", "value", "problem"),
    [
        ("mesh", "kind", "hologram", "kind"),
        ("mesh", "kind", "numpy_voxels", "kind"),  # another modality's kind
        ("voxels", "kind", "trimesh", "kind"),
        ("mesh", "grid_shape", [8, 8], "grid_shape"),
        ("mesh", "grid_shape", [8, 0, 8], "grid_shape"),
        ("mesh", "grid_shape", [8, -8, 8], "grid_shape"),
        ("mesh", "grid_shape", [2**20, 2**20, 2**20], "grid_shape"),
        ("mesh", "grid_shape", None, "malformed"),
        ("mesh", "origin", [0.0, 0.0, math.nan], "origin"),
        ("mesh", "origin", [0.0, math.inf, 0.0], "origin"),
        ("mesh", "origin", [0.0, 0.0], "origin"),
        ("mesh", "origin", [0.0, "x", 0.0], "origin"),
        ("mesh", "pitch", 0.0, "pitch"),
        ("mesh", "pitch", -0.5, "pitch"),
        ("mesh", "pitch", math.nan, "pitch"),
        ("mesh", "pitch", math.inf, "pitch"),
        ("mesh", "pitch", 1e308, "pitch"),  # the grid's far corner overflows
        ("mesh", "pitch", "wide", "malformed"),
        ("mesh", "fill", "hollow", "fill"),
        ("mesh", "fill", "points", "fill"),  # a points fill on a mesh
        ("voxels", "fill", "solid", "fill"),
        ("mesh", "bounds", [[0.0, 0.0, 0.0]], "bounds"),
        ("mesh", "bounds", [[0.0, 0.0, 0.0], [1.0, 1.0]], "bounds"),
        ("mesh", "bounds", [[0.0, 0.0, 0.0], [1.0, 1.0, math.nan]], "bounds"),
        ("mesh", "bounds", [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], "bounds"),  # low above high
        ("mesh", "bounds", "box", "bounds"),
        ("mesh", "vertices", -1, "vertex"),
        ("mesh", "faces", -3, "face"),
        ("mesh", "source", 12, "source"),
        ("mesh", "dtype", 3, "dtype"),
        ("torch-points", "dtype", "float999", "dtype"),
        ("torch-points", "dtype", "Tensor", "dtype"),
        ("torch-points", "dtype", "bool", "dtype"),
        ("torch-points", "dtype", "complex64", "dtype"),
        ("torch-points", "dtype", None, "dtype"),
        ("numpy-points", "dtype", "float999", "dtype"),
        ("numpy-points", "dtype", "complex64", "dtype"),
        ("numpy-points", "dtype", "U3", "dtype"),
    ],
)
def test_a_malformed_configuration_is_refused_naming_the_field(which, field, value, problem):
    config = _configs()[which]
    config["configuration"][field] = value
    with pytest.raises(FormatError, match=problem):
        adapter_from_config(config)


def test_the_point_dtypes_inputs_give_are_accepted_back():
    for dtype in (torch.float16, torch.bfloat16, torch.int64, torch.uint8):
        points = (torch.rand(20, 3) * 100).to(dtype)
        config = PointsAdapter.from_object(points, resolution=R)[0].to_config()
        assert adapter_from_config(config).to_config() == config, dtype


# ---- metrics ---------------------------------------------------------------------------------


def test_iou_counts_the_shared_voxels_over_either():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True  # 32 voxels
    b = np.zeros_like(a)
    b[1:3] = True  # 32 voxels, 16 shared
    assert metrics.iou(a, a) == 1.0
    assert metrics.iou(a, ~a) == 0.0
    assert metrics.iou(a, b) == pytest.approx(16 / 48)
    assert metrics.iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_occupancy_psnr_is_infinite_when_exact_and_drops_with_noise():
    reference = ball_grid((8, 8, 8), radius=2.5)
    assert metrics.occupancy_psnr(reference.astype(np.float32), reference) == math.inf
    rng = np.random.default_rng(0)
    previous = math.inf
    for scale in (0.01, 0.1, 0.3):
        noisy = np.clip(reference + scale * rng.standard_normal(reference.shape), 0, 1)
        psnr = metrics.occupancy_psnr(noisy, reference)
        assert math.isfinite(psnr) and psnr < previous
        previous = psnr
    flipped = (~reference).astype(np.float32)  # every voxel wrong by 1: mse 1, 0 dB
    assert metrics.occupancy_psnr(flipped, reference) == pytest.approx(0.0)


def test_surface_distances_of_identical_and_shifted_samples():
    rng = np.random.default_rng(0)
    plane = np.column_stack([rng.uniform(0, 1, (2000, 2)), np.zeros(2000)])  # z = 0
    same = metrics.surface_distances(plane, plane.copy(), tau=0.01, diagonal=2.0)
    assert same == {"chamfer_l1": 0.0, "chamfer_l1_normalised": 0.0, "f_score": 1.0}
    shift = 0.05
    moved = plane + np.array([0.0, 0.0, shift])  # the nearest point of each is its twin
    apart = metrics.surface_distances(plane, moved, tau=0.01, diagonal=2.0)
    assert apart["chamfer_l1"] == pytest.approx(shift)
    assert apart["chamfer_l1_normalised"] == pytest.approx(shift / 2.0)
    assert apart["f_score"] == 0.0  # every point farther than tau
    near = metrics.surface_distances(plane, moved, tau=0.1, diagonal=2.0)
    assert near["f_score"] == 1.0
    nothing = metrics.surface_distances(plane, None, tau=0.01, diagonal=2.0)
    assert nothing == {"chamfer_l1": None, "chamfer_l1_normalised": None, "f_score": 0.0}


def test_surface_samples_are_seeded_and_on_the_surface():
    mesh = box((2.0, 2.0, 2.0))
    first, second = metrics.surface_samples(mesh), metrics.surface_samples(mesh)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (metrics.SURFACE_SAMPLES, 3)
    assert np.allclose(np.abs(first).max(axis=1), 1.0)  # each on a face of the cube
    many = np.random.default_rng(0).random((metrics.SURFACE_SAMPLES + 10, 3))
    assert len(metrics.surface_samples(points=many)) == metrics.SURFACE_SAMPLES
    assert metrics.surface_samples(points=np.zeros((0, 3))) is None


@pytest.mark.parametrize(
    "mesh",
    [box(), trimesh.creation.icosphere(subdivisions=2), open_box()],
    ids=["box", "sphere", "open-box"],
)
def test_the_exact_decode_of_a_mesh_has_iou_one_and_f_score_near_one(mesh):
    for resolution in (8, 16):
        adapter, signal = MeshAdapter.from_object(mesh, resolution=resolution)
        decoded = adapter.from_signal(signal)
        quality = adapter.quality(mesh, decoded)
        assert quality["iou"] == 1.0, resolution  # its enclosed voxels are the signal's
        assert quality["occupancy_psnr"] == math.inf
        assert quality["f_score"] > 0.9 and quality["chamfer_l1"] < adapter.frame.pitch
        assert quality["chamfer_l1_normalised"] == pytest.approx(
            quality["chamfer_l1"] / np.linalg.norm(np.subtract(*mesh.bounds[::-1]))
        )
    for kind in ("points", "voxels"):  # the other decodes, in the last frame
        assert adapter.quality(mesh, adapter.from_signal(signal, kind=kind))["iou"] == 1.0


def test_the_shape_metrics_do_not_depend_on_the_scale():
    cube = box((2.0, 2.0, 2.0))
    points = sphere_points(100)
    results = {}
    for scale in (1e-6, 1.0, 1e100, 1e300):  # areas and squared distances overflow past 1e154
        mesh = trimesh.Trimesh(cube.vertices * scale, cube.faces, process=False)
        adapter, signal = MeshAdapter.from_object(mesh, resolution=R)
        mesh_quality = adapter.quality(mesh, adapter.from_signal(signal))
        adapter, signal = PointsAdapter.from_object(points * scale, resolution=R)
        points_quality = adapter.quality(points * scale, adapter.from_signal(signal))
        results[scale] = [
            (quality["chamfer_l1"] / scale, quality["chamfer_l1_normalised"], quality["f_score"])
            for quality in (mesh_quality, points_quality)
        ]
    for scale, values in results.items():
        np.testing.assert_allclose(values, results[1.0], rtol=1e-6, err_msg=str(scale))
    assert results[1.0][0][2] > 0.9 and results[1.0][1][2] > 0.9


def test_quality_against_another_shape_is_refused():
    adapter, signal = MeshAdapter.from_object(box(), resolution=R)
    decoded = adapter.from_signal(signal)
    assert adapter.quality(box(), decoded)["iou"] == 1.0  # an equal copy: read again
    with pytest.raises(ValueError, match="not this datum's input"):
        adapter.quality(box((3.0, 1.0, 1.0)), decoded)


def test_quality_of_an_empty_decode_is_zero_without_crashing():
    adapter, signal = MeshAdapter.from_object(open3d_box(), resolution=R)
    empty = adapter.from_signal(torch.zeros_like(signal))
    quality = adapter.quality(open3d_box(), empty)
    assert quality["iou"] == 0.0 and quality["f_score"] == 0.0 and quality["chamfer_l1"] is None
    assert adapter.as_array(adapter.from_signal(torch.zeros_like(signal), kind="mesh")).sum() == 0


def test_nan_in_a_signal_is_empty_in_every_kind_of_decode():
    adapter, signal = MeshAdapter.from_object(box(), resolution=R)
    poisoned = signal.clone()
    poisoned[0, 0, R // 2, R // 2, R // 2] = math.nan  # an occupied voxel
    grid = _grid(signal)
    grid[R // 2, R // 2, R // 2] = False
    np.testing.assert_array_equal(adapter.from_signal(poisoned, kind="voxels"), grid)
    assert len(adapter.from_signal(poisoned, kind="points")) == grid.sum()
    mesh = adapter.from_signal(poisoned)
    assert np.isfinite(mesh.vertices).all() and mesh.volume > 0


def test_occupied_centres_are_in_world_coordinates():
    frame = GridFrame((3, 3, 3), (10.0, 20.0, 30.0), 0.5)
    grid = np.zeros((3, 3, 3), np.float32)
    grid[2, 0, 1] = 0.7
    np.testing.assert_array_equal(occupied_centres(grid, frame), [[11.0, 20.0, 30.5]])


def test_npy_files_are_read_as_voxels_or_points_only_when_asked(tmp_path):
    grid = np.zeros((6, 5, 7), dtype=bool)
    grid[1:4, 2:4, 1:6] = True
    np.save(tmp_path / "grid.npy", grid)
    assert resolve(tmp_path / "grid.npy").name == "array"  # by extension, without a modality
    adapter, signal = resolve(tmp_path / "grid.npy", "voxels").read(tmp_path / "grid.npy")
    assert adapter.configuration.source == "grid.npy"
    assert (adapter.from_signal(signal) == grid).all()  # a numpy grid back, as the file held

    points = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)
    np.save(tmp_path / "points.npy", points)
    adapter, signal = PointsAdapter.from_object(tmp_path / "points.npy", resolution=R)
    decoded = adapter.from_signal(signal)
    assert decoded.dtype == np.float32 and decoded.shape[1] == 3
    assert np.abs(decoded.min(0) - points.min(0)).max() <= adapter.configuration.pitch

    np.save(tmp_path / "floats.npy", grid.astype(np.float32))
    with pytest.raises(InputError, match=r"floats\.npy.*bool"):
        VoxelsAdapter.from_object(tmp_path / "floats.npy")
