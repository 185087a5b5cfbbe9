"""Hostile inputs to the shape modalities: each is refused with an InputError naming the
problem, random meshes and point clouds end in InputError or a valid signal, and a missing
3-D library is a MissingDependencyError naming the extra."""

from __future__ import annotations

import ast
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import open3d
import pytest
import torch
import trimesh
from _shapes import box, open3d_cloud, sphere_points, write_mesh, write_points
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
import neurep.modalities as modalities
from neurep.errors import InputError, MissingDependencyError
from neurep.modalities import adapter_from_config, resolve
from neurep.modalities.shapes import MeshAdapter, PointsAdapter, VoxelsAdapter

R = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mesh(vertices, faces) -> trimesh.Trimesh:
    """A trimesh mesh exactly as given (no merging or cleaning)."""
    return trimesh.Trimesh(np.asarray(vertices, float), np.asarray(faces), process=False)


def _open3d_mesh(vertices, faces) -> open3d.geometry.TriangleMesh:
    return open3d.geometry.TriangleMesh(
        open3d.utility.Vector3dVector(np.asarray(vertices, np.float64)),
        open3d.utility.Vector3iVector(np.asarray(faces, np.int32)),
    )


TRIANGLE = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]

# name -> (modality, build the input, words the InputError must hold)
HOSTILE = {
    "empty-trimesh": ("mesh", lambda: trimesh.Trimesh(), "empty"),
    "empty-open3d-mesh": ("mesh", lambda: open3d.geometry.TriangleMesh(), "empty"),
    "nan-vertex": ("mesh", lambda: _mesh([*TRIANGLE[:2], [0, math.nan, 0]], [[0, 1, 2]]), "NaN"),
    "inf-vertex": ("mesh", lambda: _mesh([*TRIANGLE[:2], [0, 0, -math.inf]], [[0, 1, 2]]), "NaN"),
    "open3d-nan-vertex": (
        "mesh",
        lambda: _open3d_mesh([*TRIANGLE[:2], [math.nan, 0, 0]], [[0, 1, 2]]),
        "NaN or infinite",
    ),
    "zero-extent-mesh": ("mesh", lambda: _mesh([[2.0, 3.0, 4.0]] * 3, [[0, 1, 2]]), "zero extent"),
    "empty-scene": ("mesh", lambda: trimesh.Scene(), "no geometry"),
    "face-past-the-vertices": ("mesh", lambda: _mesh(TRIANGLE, [[0, 1, 3]]), "vertex"),
    "negative-face": ("mesh", lambda: _mesh(TRIANGLE, [[0, -1, 2]]), "vertex"),
    "open3d-face-past-the-vertices": (
        "mesh",
        lambda: _open3d_mesh(TRIANGLE, [[0, 1, 2], [2, 1, 7]]),
        "vertex",
    ),
    "vertices-without-faces": ("mesh", lambda: _mesh(TRIANGLE, np.zeros((0, 3), int)), "triangles"),
    "points-as-a-mesh": ("mesh", lambda: trimesh.PointCloud(sphere_points()), "point cloud"),
    "array-as-a-mesh": ("mesh", lambda: sphere_points(), "Nx3 array"),
    "empty-open3d-cloud": ("points", lambda: open3d.geometry.PointCloud(), "empty"),
    "empty-trimesh-cloud": ("points", lambda: trimesh.PointCloud(np.zeros((0, 3))), "empty"),
    "0x3-array": ("points", lambda: np.zeros((0, 3)), "empty"),
    "0x3-tensor": ("points", lambda: torch.zeros(0, 3), "empty"),
    "Nx2-array": ("points", lambda: np.zeros((5, 2)), "Nx3"),
    "N-array": ("points", lambda: np.zeros(5), "Nx3"),
    "NxMx3-array": ("points", lambda: np.zeros((5, 4, 3)), "Nx3"),
    "Nx4-tensor": ("points", lambda: torch.zeros(5, 4), "Nx3"),
    "complex-points": ("points", lambda: np.ones((5, 3), np.complex64), "integers or floats"),
    "bool-points": ("points", lambda: np.ones((5, 3), bool), "integers or floats"),
    "nan-points": ("points", lambda: np.array([[0, 0, 0], [1, 1, math.nan]]), "NaN"),
    "open3d-inf-points": ("points", lambda: open3d_cloud([[0, 0, 0], [math.inf, 0, 0]]), "NaN"),
    "one-point": ("points", lambda: np.array([[1.0, 2.0, 3.0]]), "zero extent"),
    "equal-points": ("points", lambda: torch.ones(9, 3), "zero extent"),
    "too-large-for-float64": (
        "points",
        lambda: np.array([[-1e308, 0, 0], [1e308, 0, 0]]),
        "float64",
    ),
    "grid-past-float64": (
        "points",
        lambda: np.array([[1.5e308, 0, 0], [1.79e308, 1, 1]]),
        "float64",
    ),
    "uint8-grid": ("voxels", lambda: np.ones((4, 4, 4), np.uint8), "bool"),
    "float-grid": ("voxels", lambda: torch.ones(4, 4, 4), "bool"),
    "2-d-bool-grid": ("voxels", lambda: np.ones((4, 4), bool), "DxHxW"),
    "4-d-bool-grid": ("voxels", lambda: np.ones((2, 4, 4, 4), bool), "DxHxW"),
    "empty-grid": ("voxels", lambda: np.zeros((0, 4, 4), bool), "empty"),
    "empty-tensor-grid": ("voxels", lambda: torch.zeros(4, 0, 4, dtype=torch.bool), "empty"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_input_is_an_input_error_naming_the_problem(name):
    modality, build, problem = HOSTILE[name]
    with pytest.raises(InputError, match=problem):
        modalities.get(modality).from_object(build())


@pytest.mark.parametrize("name", ["empty-scene", "nan-vertex", "empty-open3d-cloud", "uint8-grid"])
def test_fit_passes_the_input_error_on(name):
    modality, build, problem = HOSTILE[name]
    with pytest.raises(InputError, match=problem):
        neurep.fit(build(), modality=modality, steps=1, progress=False)


@pytest.mark.parametrize(
    ("resolution", "problem"),
    [
        *[(size, "4 to 256") for size in (3, 257, 0, -8, 2**40)],
        *[(size, "integer") for size in (8.0, True, "8", None, [8])],
    ],
)
def test_a_bad_resolution_is_refused(resolution, problem):
    with pytest.raises(InputError, match=f"resolution.*{problem}"):
        MeshAdapter.from_object(box(), resolution=resolution)
    with pytest.raises(InputError, match="resolution"):
        PointsAdapter.from_object(sphere_points(), resolution=resolution)


def test_a_numpy_integer_resolution_is_an_integer():
    assert MeshAdapter.from_object(box(), resolution=np.int64(6))[1].shape == (1, 1, 6, 6, 6)


@pytest.mark.parametrize("fill", ["hollow", "Solid", None, 1, ["auto"]])
def test_a_bad_fill_is_refused_naming_the_choices(fill):
    with pytest.raises(InputError, match="fill must be one of auto, solid, shell"):
        MeshAdapter.from_object(box(), resolution=R, fill=fill)


def test_options_of_other_modalities_are_refused_by_name():
    with pytest.raises(InputError, match="no option 'fill'"):
        PointsAdapter.read(sphere_points(), fill="solid")
    with pytest.raises(InputError, match="no option 'resolution'"):
        VoxelsAdapter.read(np.ones((4, 4, 4), bool), resolution=8)
    with pytest.raises(InputError, match="no option 'resolution'"):
        neurep.fit(np.ones((4, 4, 4), bool), resolution=8, steps=1, progress=False)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("garbage.obj", b"\x00\x01 not a mesh \xff", "garbage.obj"),
        ("garbage.stl", b"\x00" * 10, "garbage.stl"),
        ("garbage.off", b"OFF\n3 1 0\n0 0 0\n", "garbage.off"),
        ("garbage.glb", b"glTF\x02\x00\x00\x00 broken", "garbage.glb"),
        ("garbage.pcd", b"not a point cloud", "no points"),
        ("empty.xyz", b"", "empty.xyz"),
        (
            "bad.ply",
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
            "bad.ply",
        ),
        (
            "faces-only.ply",
            b"ply\nformat ascii 1.0\nelement face 1\nend_header\n",
            "faces-only.ply",
        ),
    ],
)
def test_a_damaged_file_is_an_input_error_naming_it(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=problem):
        resolve(path).from_object(path, resolution=R)


def test_a_missing_file_is_reported(tmp_path):
    for name in ("absent.obj", "absent.pcd", "absent.ply"):
        with pytest.raises(InputError, match="no such file"):
            resolve(tmp_path / name).from_object(tmp_path / name)


def test_a_file_of_points_is_not_a_mesh(tmp_path):
    path = write_points(tmp_path / "cloud.ply", sphere_points())
    with pytest.raises(InputError, match=r"point cloud, not a mesh.*modality=.points."):
        MeshAdapter.from_object(path)


# ---- random inputs ---------------------------------------------------------------------------

MAGNITUDES = st.sampled_from([1e-300, 1e-12, 1e-3, 1.0, 1.0, 1e3, 1e12, 1e300])
OFFSETS = st.sampled_from([0.0, 0.0, 1.0, -1e6, 1e15])


def _rarely(draw, hostile: bool = True) -> bool:
    """True one time in eight (never unless ``hostile``): a hostile detail, rare enough that
    most inputs stay usable."""
    return hostile and draw(st.sampled_from(range(8))) == 7


@st.composite
def _coordinates(draw, max_points: int = 12, hostile: bool = True) -> np.ndarray:
    """(N, 3) float64: a few distinct points (scaled, offset), repeated in random order;
    rarely none, one distinct point, or a NaN or an infinity among them."""
    distinct = 1 if _rarely(draw, hostile) else draw(st.integers(2, 6))
    values = st.floats(-1.0, 1.0, allow_nan=False)
    triples = st.tuples(values, values, values)
    pool = np.array(draw(st.lists(triples, min_size=distinct, max_size=distinct, unique=True)))
    scale = draw(MAGNITUDES if hostile else st.sampled_from([1e-3, 1.0, 1e3, 1e12]))
    pool = pool * scale + draw(OFFSETS if hostile else st.sampled_from([0.0, 1.0]))
    if _rarely(draw, hostile):
        return np.zeros((0, 3))
    picks = draw(st.lists(st.integers(0, distinct - 1), min_size=distinct, max_size=max_points))
    points = np.concatenate([pool, pool[picks]])  # every distinct point, and duplicates
    points = points[draw(st.permutations(range(len(points))))]
    if _rarely(draw, hostile):
        row, column = draw(st.integers(0, len(points) - 1)), draw(st.integers(0, 2))
        points[row, column] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return points


@st.composite
def _random_meshes(draw, hostile: bool = True) -> trimesh.Trimesh:
    vertices = draw(_coordinates(hostile=hostile))
    count = len(vertices)
    low, high = (-1, count) if _rarely(draw, hostile) else (0, count - 1)  # past either end
    index = st.integers(low, max(low, high))
    least = 0 if _rarely(draw, hostile) else 1
    faces = draw(st.lists(st.tuples(index, index, index), min_size=least, max_size=10))
    return _mesh(vertices, np.array(faces, dtype=np.int64).reshape(-1, 3))


@st.composite
def _random_clouds(draw, hostile: bool = True):
    points = draw(_coordinates(max_points=40, hostile=hostile))
    container = draw(st.sampled_from(["float64", "float32", "torch", "open3d", "trimesh"]))
    if container == "float32":
        return points.astype(np.float32)
    if container == "torch":
        return torch.from_numpy(points)
    if container == "open3d":
        return open3d_cloud(points)
    return trimesh.PointCloud(points) if container == "trimesh" and len(points) else points


def _check_valid(adapter, signal, resolution: int) -> None:
    """A valid read: a non-empty 0/1 signal of the grid's shape, a configuration that
    survives JSON, and a decode of the input's kind."""
    assert signal.shape == (1, 1, resolution, resolution, resolution)
    assert signal.dtype == torch.float32 and signal.sum() > 0 and signal.max() == 1.0
    assert set(torch.unique(signal).tolist()) <= {0.0, 1.0}
    config = adapter.to_config()
    rebuilt = adapter_from_config(json.loads(json.dumps(config, allow_nan=False)))
    assert rebuilt.to_config() == config
    np.testing.assert_array_equal(rebuilt.from_signal(signal, kind="voxels"), signal[0, 0] > 0.5)
    assert np.isfinite(rebuilt.from_signal(signal, kind="points")).all()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mesh=_random_meshes(),
    resolution=st.sampled_from([4, 8]),
    fill=st.sampled_from(["auto", "solid", "shell"]),
)
def test_a_random_mesh_is_refused_or_voxelised(mesh, resolution, fill):
    try:
        adapter, signal = MeshAdapter.from_object(mesh, resolution=resolution, fill=fill)
    except InputError:
        return
    _check_valid(adapter, signal, resolution)
    decoded = adapter.from_signal(signal)
    assert isinstance(decoded, trimesh.Trimesh) and np.isfinite(decoded.vertices).all()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cloud=_random_clouds(), resolution=st.sampled_from([4, 8]))
def test_a_random_point_cloud_is_refused_or_voxelised(cloud, resolution):
    try:
        adapter, signal = PointsAdapter.from_object(cloud, resolution=resolution)
    except InputError:
        return
    _check_valid(adapter, signal, resolution)
    decoded = adapter.from_signal(signal)
    assert type(decoded) is type(cloud) or isinstance(cloud, np.ndarray | torch.Tensor)
    if isinstance(cloud, open3d.geometry.PointCloud):
        count = len(cloud.points)
    else:
        count = len(cloud.vertices if isinstance(cloud, trimesh.PointCloud) else cloud)
    assert adapter.configuration.vertices == count


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.one_of(_random_meshes(hostile=False), _random_clouds(hostile=False)))
def test_a_random_shape_fits_saves_and_decodes_or_is_refused(obj):
    modality = "mesh" if isinstance(obj, trimesh.Trimesh) else "points"
    try:
        datum = neurep.fit(obj, modality=modality, steps=1, resolution=R, progress=False)
    except InputError:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shape.nrep"
        datum.save(path)
        loaded = neurep.load(path)
        decoded = loaded.decode()
        assert type(decoded) is type(datum.decode())
        if modality == "mesh":
            assert isinstance(decoded, trimesh.Trimesh)
        else:
            assert type(decoded) is type(obj)
        voxels = loaded.decode(kind="voxels")
        assert voxels.shape == (R, R, R) and voxels.dtype == bool


# ---- the 3-D libraries are optional ----------------------------------------------------------


def test_without_trimesh_meshes_raise_missing_dependency_naming_the_extra(tmp_path, monkeypatch):
    inputs = [write_mesh(tmp_path / "box.obj", box()), box()]
    inputs.append(write_points(tmp_path / "cloud.xyz", sphere_points()))
    monkeypatch.setitem(sys.modules, "trimesh", None)  # `import trimesh` now raises ImportError
    for obj in inputs:
        with pytest.raises(MissingDependencyError, match=r"pip install 'neurep\[shapes\]'"):
            resolve(obj).from_object(obj, resolution=R)
    # voxel grids and open3d clouds need no trimesh to be read
    assert VoxelsAdapter.from_object(np.ones((2, 2, 2), bool))[1].shape == (1, 1, 2, 2, 2)


def test_without_open3d_point_files_raise_missing_dependency_naming_the_extra(
    tmp_path, monkeypatch
):
    path = write_points(tmp_path / "cloud.pcd", sphere_points())
    adapter, signal = PointsAdapter.from_object(sphere_points(), resolution=R)
    config = adapter.to_config()
    config["configuration"]["kind"] = "open3d_points"
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'neurep\[shapes\]'"):
        PointsAdapter.from_object(path)
    with pytest.raises(MissingDependencyError, match=r"neurep\[shapes\]"):
        adapter_from_config(config).from_signal(signal)
    assert PointsAdapter.from_object(sphere_points(), resolution=R)[1].sum() > 0  # numpy: fine


def test_without_scikit_image_a_mesh_decode_raises_missing_dependency(monkeypatch):
    adapter, signal = MeshAdapter.from_object(box(), resolution=R)
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(MissingDependencyError, match=r"scikit-image.*neurep\[shapes\]"):
        adapter.from_signal(signal)
    assert adapter.from_signal(signal, kind="voxels").sum() == signal.sum()


@pytest.mark.parametrize(
    "module", ["shapes.py", "_shape_grid.py", "_shape_read.py", "_shape_metrics.py"]
)
def test_the_shape_modules_import_3d_libraries_only_inside_functions(module):
    source = (Path(modalities.__file__).parent / module).read_text()
    optional = {"trimesh", "open3d", "skimage", "scipy"}
    for node in ast.parse(source).body:  # module-level statements only
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            assert not {name.split(".")[0] for name in names} & optional, ast.dump(node)
