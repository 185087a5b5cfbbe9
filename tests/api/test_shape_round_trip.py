"""3-D shapes end to end: fit, save, load, decode a mesh, a point cloud, an open3d mesh and a
voxel grid; the stored shape metrics; a file whose grid disagrees with its signal."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import open3d
import pytest
import trimesh
from _shapes import ball_grid, box, open3d_box, sphere_points

import neurep
from neurep.formats import write_nrep
from neurep.modalities import _shape_metrics as metrics
from neurep.modalities.shapes import MeshAdapter

FAST = {"steps": 20, "progress": False}
METRICS = ("iou", "psnr", "occupancy_psnr", "chamfer_l1", "chamfer_l1_normalised", "f_score")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs() -> dict:
    """name -> (input, fit options, the decode's type)."""
    return {
        "mesh": (box(), {"resolution": 8}, trimesh.Trimesh),
        "points": (
            sphere_points(300).astype(np.float32),
            {"modality": "points", "resolution": 8},
            np.ndarray,
        ),
        "open3d-mesh": (open3d_box(), {"resolution": 16}, open3d.geometry.TriangleMesh),
        "voxels": (ball_grid((9, 10, 11), radius=3.5), {}, np.ndarray),  # its own grid
    }


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict:
    """name -> (input, datum, its file): each fitted once."""
    folder = tmp_path_factory.mktemp("shapes")
    results = {}
    for name, (obj, options, _) in _inputs().items():
        datum = neurep.fit(obj, **FAST, **options)
        path = folder / f"{name}.nrep"
        assert datum.save(path) == path.stat().st_size
        results[name] = (obj, datum, path)
    return results


def _same_decode(first, second) -> None:
    """Two decodes of one kind are equal exactly."""
    assert type(first) is type(second)
    if isinstance(first, trimesh.Trimesh):
        np.testing.assert_array_equal(first.vertices, second.vertices)
        np.testing.assert_array_equal(first.faces, second.faces)
    elif isinstance(first, open3d.geometry.TriangleMesh):
        np.testing.assert_array_equal(np.asarray(first.vertices), np.asarray(second.vertices))
        np.testing.assert_array_equal(np.asarray(first.triangles), np.asarray(second.triangles))
    else:
        assert first.dtype == second.dtype
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", list(_inputs()))
def test_a_fitted_shape_decodes_from_its_file_exactly_as_in_memory(fitted, name):
    obj, datum, path = fitted[name]
    loaded = neurep.load(path)
    decoded = loaded.decode()
    assert type(decoded) is _inputs()[name][2]
    _same_decode(decoded, datum.decode())
    if name == "points":
        assert decoded.dtype == np.float32 and decoded.shape[1:] == (3,)
    if name == "voxels":
        assert decoded.shape == obj.shape and decoded.dtype == bool
    grid_shape = tuple(loaded.metadata["modality"]["configuration"]["grid_shape"])
    assert loaded.metadata["signal"]["shape"] == [1, 1, *grid_shape]
    for kind, container in (("mesh", trimesh.Trimesh), ("points", np.ndarray)):
        assert type(loaded.decode(kind=kind)) is container
        _same_decode(loaded.decode(kind=kind), datum.decode(kind=kind))
    voxels = loaded.decode(kind="voxels")
    assert voxels.dtype == bool and voxels.shape == grid_shape
    np.testing.assert_array_equal(voxels, datum.decode(kind="voxels"))
    points = loaded.decode(kind="points")
    assert points.dtype == np.float64 and len(points) == voxels.sum()


@pytest.mark.parametrize("name", list(_inputs()))
def test_the_stored_quality_holds_every_shape_metric_in_its_range(fitted, name):
    obj, _, path = fitted[name]
    loaded = neurep.load(path)
    quality = loaded.metadata["quality"]
    for key in METRICS:
        value = quality[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
    assert 0.0 <= quality["iou"] <= 1.0 and 0.0 <= quality["f_score"] <= 1.0
    assert quality["psnr"] == quality["occupancy_psnr"] > 0.0
    assert quality["chamfer_l1"] >= 0.0 and quality["ms_ssim"] is None
    low, high = np.array(loaded.metadata["modality"]["configuration"]["bounds"])
    diagonal = float(np.linalg.norm(high - low))
    assert quality["chamfer_l1_normalised"] == pytest.approx(quality["chamfer_l1"] / diagonal)
    measured = loaded.adapter.measure(obj, loaded)  # the adapter rebuilt from the file
    for key in METRICS:
        assert measured[key] == pytest.approx(quality[key], rel=1e-9), key


def test_a_box_is_learnt_to_an_iou_of_at_least_nine_tenths(tmp_path):
    cube = box((2.0, 1.5, 1.0))
    datum = neurep.fit(cube, steps=60, resolution=8, progress=False)
    datum.save(tmp_path / "box.nrep")
    loaded = neurep.load(tmp_path / "box.nrep")
    assert loaded.metadata["quality"]["iou"] >= 0.9
    _, signal = MeshAdapter.from_object(cube, resolution=8)
    assert metrics.iou(loaded.decode(kind="voxels"), signal[0, 0].numpy() > 0.5) >= 0.9
    quality = loaded.adapter.quality(cube, loaded.decode())  # the decoded mesh's own voxels
    assert quality["iou"] >= 0.9 and quality["f_score"] >= 0.9


def test_decode_refuses_options_the_modality_does_not_take(fitted):
    loaded = neurep.load(fitted["mesh"][2])
    with pytest.raises(TypeError, match=r"no option 'colour'.*kind"):
        loaded.decode(colour=1)
    with pytest.raises(ValueError, match="kind must be one of mesh, points, voxels"):
        loaded.decode(kind="cloud")
    image = neurep.fit(np.zeros((8, 8, 3), np.uint8), steps=1, progress=False)
    with pytest.raises(TypeError, match="no option 'kind'"):
        image.decode(kind="mesh")


def _tampered(path: Path, folder: Path, **changes) -> Path:
    """A copy of the .nrep ``path`` whose modality configuration has ``changes``."""
    reader = neurep.open(path)
    metadata = copy.deepcopy(reader.metadata)
    for written_by_the_writer in ("format", "format_version", "library", "created"):
        metadata.pop(written_by_the_writer, None)
    metadata["modality"]["configuration"].update(changes)
    target = folder / "tampered.nrep"
    embedding = reader.read_array("embedding", slice(None))
    arrays = {"embedding": embedding}
    write_nrep(target, metadata=metadata, arrays=arrays, tensors=reader.read_tensors())
    return target


def test_a_file_whose_grid_disagrees_with_its_signal_is_refused_on_load(fitted, tmp_path):
    path = fitted["mesh"][2]
    tampered = _tampered(path, tmp_path, grid_shape=[8, 8, 9])
    with pytest.raises(neurep.FormatError, match="inconsistent metadata"):
        neurep.load(tampered)


@pytest.mark.parametrize(
    "changes", [{"pitch": -1.0}, {"origin": [0.0, 0.0]}, {"kind": "hologram"}, {"fill": "x"}]
)
def test_a_file_with_a_malformed_shape_configuration_is_refused(fitted, tmp_path, changes):
    tampered = _tampered(fitted["mesh"][2], tmp_path, **changes)
    with pytest.raises(neurep.FormatError, match=next(iter(changes))):
        neurep.load(tampered).decode()


def test_a_shape_file_reports_its_grid_without_reading_weights(fitted):
    reader = neurep.open(fitted["points"][2])
    configuration = reader.metadata["modality"]["configuration"]
    assert reader.metadata["modality"]["name"] == "points"
    assert configuration["grid_shape"] == [8, 8, 8] and configuration["dtype"] == "float32"
    assert configuration["vertices"] == 300 and configuration["kind"] == "points_array"
    assert math.isfinite(configuration["pitch"]) and configuration["pitch"] > 0
