"""``neurep fit`` / ``decode`` / ``info`` on 3-D shapes: meshes, point clouds, voxel grids."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import neurep
from neurep.cli import _writers, decode, fit, info
from neurep.modalities._shape_grid import FILL_CHOICES

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("skimage")

torch.set_num_threads(1)  # 8^3 grids: threads cost more than they give

RESOLUTION = 8
#: Enough steps for an 8^3 box to decode to a surface (after 5 nothing reaches 0.5 yet).
STEPS = 40
FAST = ["--steps", str(STEPS), "--resolution", str(RESOLUTION)]
BOX_EXTENTS, BOX_CENTRE = (1.0, 2.0, 3.0), (5.0, 0.0, 0.0)
MESH_SUFFIXES = [".obj", ".ply", ".stl", ".off", ".glb"]


def _run(module, argv) -> tuple[int, str, str]:
    """``module.main(argv)`` with stdout and stderr captured (usable in module fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def _assert_one_error_line(capsys, *fragments):
    captured = capsys.readouterr()
    assert captured.err.startswith("neurep: error: "), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err, captured.err


def _box():
    box = trimesh.creation.box(extents=BOX_EXTENTS)
    box.apply_translation(BOX_CENTRE)
    return box


def _config(nrep) -> dict:
    return neurep.open(nrep).metadata["modality"]["configuration"]


@pytest.fixture(scope="module")
def box_fit(tmp_path_factory):
    """A 1x2x3 box at x=5 as .obj and .stl, the .obj's fit (8^3, 40 steps) and its summary."""
    folder = tmp_path_factory.mktemp("box")
    source = folder / "box.obj"
    _box().export(source)
    _box().export(folder / "box.stl")
    nrep = folder / "box.nrep"
    code, out, err = _run(fit, [source, "-o", nrep, *FAST])
    assert code == 0, err
    mesh = neurep.load(nrep).decode(kind="mesh")
    return {"source": source, "stl": folder / "box.stl", "nrep": nrep, "summary": out, "mesh": mesh}


@pytest.fixture(scope="module")
def cloud_fit(tmp_path_factory):
    """500 points on the box's surface as .xyz, and their fit."""
    folder = tmp_path_factory.mktemp("cloud")
    points = trimesh.sample.sample_surface(_box(), 500, seed=1)[0]
    source = folder / "cloud.xyz"
    np.savetxt(source, points, fmt="%.6f")
    nrep = folder / "cloud.nrep"
    code, _, err = _run(fit, [source, "-o", nrep, *FAST, "-q"])
    assert code == 0, err
    return {"source": source, "points": points, "nrep": nrep}


@pytest.fixture(scope="module")
def grid_fit(tmp_path_factory):
    """A bool 8x8x8 grid with a 4x4x6 block as .npy, and its fit with --modality voxels."""
    folder = tmp_path_factory.mktemp("grid")
    grid = np.zeros((8, 8, 8), bool)
    grid[2:6, 2:6, 1:7] = True
    source = folder / "grid.npy"
    np.save(source, grid)
    nrep = folder / "grid.nrep"
    code, _, err = _run(fit, [source, "-o", nrep, "--modality", "voxels", "--steps", STEPS, "-q"])
    assert code == 0, err
    return {"source": source, "grid": grid, "nrep": nrep}


@pytest.fixture(scope="module")
def image_nrep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image")
    source = folder / "picture.png"
    Image.fromarray(np.arange(16 * 24, dtype=np.uint8).reshape(16, 24)).save(source)
    nrep = folder / "picture.nrep"
    assert _run(fit, [source, "-o", nrep, "--steps", "1", "-q"])[0] == 0
    return source, nrep


def _pitch(nrep) -> float:
    return float(_config(nrep)["pitch"])


# ---- fit ---------------------------------------------------------------------------------------


def test_fit_of_a_mesh_file_records_the_grid_and_prints_shape_metrics(box_fit):
    metadata = neurep.open(box_fit["nrep"]).metadata
    config = metadata["modality"]["configuration"]
    assert metadata["modality"]["name"] == "mesh" and metadata["fit"]["steps"] == STEPS
    assert config["grid_shape"] == [RESOLUTION] * 3 and config["fill"] == "solid"  # watertight
    assert (config["vertices"], config["faces"], config["source"]) == (8, 12, "box.obj")
    np.testing.assert_allclose(config["bounds"], _box().bounds)
    quality = metadata["quality"]
    file_bytes = box_fit["nrep"].stat().st_size
    summary = box_fit["summary"]
    assert summary.count("\n") == 1 and "box.obj -> " in summary
    assert f"mesh of 8 vertices, 12 faces, 8^3 grid (solid), {file_bytes:,} bytes" in summary
    assert f"IoU {quality['iou']:.4f}" in summary
    assert f"F-score {quality['f_score']:.4f}" in summary
    assert f"Chamfer-L1 {quality['chamfer_l1']:.4g}" in summary
    assert f"occupancy PSNR {quality['occupancy_psnr']:.2f} dB" in summary
    assert "bpp" not in summary and "MS-SSIM" not in summary  # neither applies to a shape


def test_fit_resolution_and_fill_reach_the_reader(box_fit, tmp_path):
    nrep = tmp_path / "shell.nrep"
    argv = [box_fit["stl"], "-o", nrep, "--steps", "1", "--resolution", "6", "--fill", "shell"]
    assert _run(fit, [*argv, "-q"])[0] == 0
    config = _config(nrep)
    assert config["grid_shape"] == [6, 6, 6] and config["fill"] == "shell"
    assert config["source"] == "box.stl"


def test_fit_fill_choices_are_the_libraries():
    assert fit.FILLS == FILL_CHOICES


def test_fit_of_points_and_of_a_voxel_grid_pick_their_modalities(cloud_fit, grid_fit):
    metadata = neurep.open(cloud_fit["nrep"]).metadata
    assert metadata["modality"]["name"] == "points"
    config = metadata["modality"]["configuration"]
    assert config["fill"] == "points" and config["vertices"] == 500 and config["faces"] == 0
    metadata = neurep.open(grid_fit["nrep"]).metadata
    config = metadata["modality"]["configuration"]
    assert metadata["modality"]["name"] == "voxels" and config["kind"] == "numpy_voxels"
    assert config["grid_shape"] == [8, 8, 8] and config["vertices"] == grid_fit["grid"].sum()
    assert neurep.load(grid_fit["nrep"]).decode().dtype == bool  # the grid, back as a grid


def test_fit_of_a_bool_npy_without_modality_voxels_is_an_array(grid_fit, tmp_path):
    nrep = tmp_path / "array.nrep"
    assert _run(fit, [grid_fit["source"], "-o", nrep, "--steps", "1", "-q"])[0] == 0
    assert neurep.open(nrep).metadata["modality"]["name"] == "array"


def test_fit_of_an_npy_of_points_with_modality_points(cloud_fit, tmp_path):
    source = tmp_path / "points.npy"
    np.save(source, cloud_fit["points"].astype(np.float32))
    nrep = tmp_path / "points.nrep"
    argv = [source, "-o", nrep, "--modality", "points", "--steps", "1", "--resolution", "6"]
    assert _run(fit, [*argv, "-q"])[0] == 0
    config = _config(nrep)
    assert config["kind"] == "points_array" and config["dtype"] == "float32"
    assert config["vertices"] == 500 and config["grid_shape"] == [6, 6, 6]


def test_fit_refuses_shape_options_for_an_image(image_nrep, tmp_path, capsys):
    source, _ = image_nrep
    target = tmp_path / "x.nrep"
    assert fit.main([str(source), "-o", str(target), "--resolution", "8", "-q"]) == 1
    _assert_one_error_line(capsys, "picture.png", "--resolution", "image", "none")
    assert fit.main([str(source), "-o", str(target), "--fill", "solid", "-q"]) == 1
    _assert_one_error_line(capsys, "--fill", "image")
    assert not target.exists()


def test_fit_refuses_fill_for_points_and_options_for_a_grid(cloud_fit, grid_fit, tmp_path, capsys):
    target = tmp_path / "x.nrep"
    assert fit.main([str(cloud_fit["source"]), "-o", str(target), "--fill", "shell"]) == 1
    _assert_one_error_line(capsys, "cloud.xyz", "--fill", "points", "--resolution")
    argv = [str(grid_fit["source"]), "-o", str(target), "--modality", "voxels"]
    assert fit.main([*argv, "--resolution", "8"]) == 1
    _assert_one_error_line(capsys, "grid.npy", "--resolution", "voxels")
    assert not target.exists()


def test_fit_bad_resolution_and_fill_are_clear_errors(box_fit, tmp_path, capsys):
    source, target = str(box_fit["source"]), str(tmp_path / "x.nrep")
    assert fit.main([source, "-o", target, "--resolution", "2"]) == 1
    _assert_one_error_line(capsys, "4 to 256", "2")
    assert fit.main([source, "-o", target, "--resolution", "0"]) == 2
    assert "argument --resolution" in capsys.readouterr().err
    assert fit.main([source, "-o", target, "--fill", "hollow"]) == 2
    assert "argument --fill" in capsys.readouterr().err
    assert not (tmp_path / "x.nrep").exists()


def test_fit_voxels_needs_a_bool_npy_file(box_fit, tmp_path, capsys):
    target = tmp_path / "x.nrep"
    assert fit.main([str(box_fit["source"]), "-o", str(target), "--modality", "voxels"]) == 1
    _assert_one_error_line(capsys, "box.obj", "voxels", ".npy")
    floats = tmp_path / "floats.npy"
    np.save(floats, np.ones((4, 4, 4)))
    assert fit.main([str(floats), "-o", str(target), "--modality", "voxels"]) == 1
    _assert_one_error_line(capsys, "floats.npy", "bool", "threshold")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert fit.main([str(pickled), "-o", str(target), "--modality", "voxels"]) == 1
    _assert_one_error_line(capsys, "pickled.npy", "allow_pickle")
    assert not target.exists()


# ---- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_decode_to_a_mesh_file_gives_the_box_back_in_world_coordinates(
    box_fit, tmp_path, capsys, suffix
):
    output = tmp_path / f"back{suffix}"
    assert decode.main([str(box_fit["nrep"]), "-o", str(output)]) == 0
    out = capsys.readouterr().out
    expected = box_fit["mesh"]  # the API's decode(kind="mesh")
    mesh = trimesh.load(output, force="mesh")
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == len(expected.faces) > 0
    assert out.count("\n") == 1 and str(output) in out
    assert f"mesh, {len(expected.vertices):,} vertices, {len(expected.faces):,} faces" in out
    tolerance = 2 * _pitch(box_fit["nrep"])
    np.testing.assert_allclose(mesh.bounds, _box().bounds, atol=tolerance)
    assert sorted(path.name for path in tmp_path.iterdir()) == [output.name]  # no temporaries


def test_decode_to_npy_writes_the_bool_occupancy_grid(box_fit, tmp_path, capsys):
    output = tmp_path / "grid.npy"
    assert decode.main([str(box_fit["nrep"]), "-o", str(output)]) == 0
    grid = np.load(output)
    assert grid.dtype == bool and grid.shape == (RESOLUTION,) * 3
    np.testing.assert_array_equal(grid, neurep.load(box_fit["nrep"]).decode(kind="voxels"))
    assert 0 < grid.sum() < grid.size
    out = capsys.readouterr().out
    assert f"voxels, bool grid 8x8x8, {grid.sum():,} occupied" in out


def test_decode_kind_points_to_npy_and_xyz_gives_the_voxel_centres(box_fit, tmp_path):
    expected = neurep.load(box_fit["nrep"]).decode(kind="points")
    assert (
        decode.main([str(box_fit["nrep"]), "-o", str(tmp_path / "p.npy"), "--kind", "points"]) == 0
    )
    points = np.load(tmp_path / "p.npy")
    assert points.dtype == np.float64 and points.shape == expected.shape and len(points) > 0
    np.testing.assert_array_equal(points, expected)
    assert decode.main([str(box_fit["nrep"]), "-o", str(tmp_path / "p.xyz"), "-q"]) == 0
    cloud = trimesh.load(tmp_path / "p.xyz")
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_allclose(np.asarray(cloud.vertices), expected, atol=1e-5)


def test_decode_of_a_point_cloud_writes_points_to_ply_and_a_mesh_to_obj(
    cloud_fit, tmp_path, capsys
):
    nrep = str(cloud_fit["nrep"])
    assert decode.main([nrep, "-o", str(tmp_path / "back.ply")]) == 0
    cloud = trimesh.load(tmp_path / "back.ply")
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) > 0
    assert f"points, {len(cloud.vertices):,} points" in capsys.readouterr().out
    pitch = _pitch(cloud_fit["nrep"])
    low, high = cloud_fit["points"].min(axis=0), cloud_fit["points"].max(axis=0)
    vertices = np.asarray(cloud.vertices)
    assert (vertices >= low - pitch).all() and (vertices <= high + pitch).all()
    assert decode.main([nrep, "-o", str(tmp_path / "back.obj"), "-q"]) == 0
    mesh = trimesh.load(tmp_path / "back.obj", force="mesh")
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0
    assert decode.main([nrep, "-o", str(tmp_path / "mesh.ply"), "--kind", "mesh", "-q"]) == 0
    assert len(trimesh.load(tmp_path / "mesh.ply", force="mesh").faces) > 0


def test_decode_of_points_to_pcd_is_read_back_by_open3d(cloud_fit, tmp_path):
    open3d = pytest.importorskip("open3d")
    output = tmp_path / "back.pcd"
    assert decode.main([str(cloud_fit["nrep"]), "-o", str(output), "-q"]) == 0
    points = np.asarray(open3d.io.read_point_cloud(str(output)).points)
    expected = neurep.load(cloud_fit["nrep"]).decode(kind="points")
    np.testing.assert_allclose(points, expected, atol=1e-5)
    assert [path.name for path in tmp_path.iterdir()] == ["back.pcd"]


def test_decode_of_a_voxel_grid_to_npy_and_to_a_mesh(grid_fit, tmp_path):
    nrep = str(grid_fit["nrep"])
    assert decode.main([nrep, "-o", str(tmp_path / "back.npy"), "-q"]) == 0
    grid = np.load(tmp_path / "back.npy")
    assert grid.dtype == bool and grid.shape == (8, 8, 8)
    assert np.logical_and(grid, grid_fit["grid"]).sum() > 0  # overlaps the block
    assert decode.main([nrep, "-o", str(tmp_path / "back.stl"), "-q"]) == 0
    mesh = trimesh.load(tmp_path / "back.stl", force="mesh")
    # a grid's world coordinates are its indices: the block spans 2..5, 2..5, 1..6
    np.testing.assert_allclose(mesh.bounds, [[1.5, 1.5, 0.5], [5.5, 5.5, 6.5]], atol=1.0)


@pytest.mark.parametrize("name", ["old.obj", "old.pcd"])
def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(
    box_fit, tmp_path, monkeypatch, capsys, name
):
    if name.endswith(".pcd"):
        pytest.importorskip("open3d")
    output = tmp_path / name
    output.write_text("the old file")

    def refuse(source, target):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(_writers.os, "replace", refuse)
    assert decode.main([str(box_fit["nrep"]), "-o", str(output)]) == 1
    _assert_one_error_line(capsys, name, "no space left")
    assert output.read_text() == "the old file"
    assert [path.name for path in tmp_path.iterdir()] == [name]


def test_decode_refuses_to_write_an_empty_surface(box_fit, tmp_path, capsys):
    nrep = tmp_path / "early.nrep"
    argv = [box_fit["source"], "-o", nrep, "--steps", "5", "--resolution", "8", "-q"]
    assert _run(fit, argv)[0] == 0
    assert decode.main([str(nrep), "-o", str(tmp_path / "early.npy"), "-q"]) == 0
    assert not np.load(tmp_path / "early.npy").any()  # after 5 steps nothing reaches 0.5
    assert decode.main([str(nrep), "-o", str(tmp_path / "early.obj")]) == 1
    _assert_one_error_line(capsys, "early.nrep", "no voxel", ".npy")
    assert decode.main([str(nrep), "-o", str(tmp_path / "early.xyz")]) == 1
    _assert_one_error_line(capsys, "no point")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["early.npy", "early.nrep"]


@pytest.mark.parametrize("name", ["out.png", "out.mp4", "out.tif", "frames/", "out.gltf", "out"])
def test_decode_refuses_image_and_video_outputs_for_a_shape(box_fit, tmp_path, capsys, name):
    assert decode.main([str(box_fit["nrep"]), "-o", f"{tmp_path}/{name}"]) == 1
    _assert_one_error_line(capsys, "mesh datum", ".obj", ".xyz", ".npy")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "kind", "fragments"),
    [
        ("out.obj", "voxels", ("voxels decode", ".npy", "not .obj")),
        ("out.xyz", "mesh", ("mesh decode", ".obj", "not .xyz")),
        ("out.npy", "mesh", ("mesh decode", ".glb", "not .npy")),
        ("out.stl", "points", ("points decode", ".pcd", "not .stl")),
    ],
)
def test_decode_refuses_a_kind_its_suffix_cannot_hold(
    box_fit, tmp_path, capsys, name, kind, fragments
):
    assert decode.main([str(box_fit["nrep"]), "-o", str(tmp_path / name), "--kind", kind]) == 1
    _assert_one_error_line(capsys, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_decode_refuses_frames_for_a_shape_and_bad_kinds(box_fit, tmp_path, capsys):
    nrep, output = str(box_fit["nrep"]), str(tmp_path / "out.obj")
    assert decode.main([nrep, "-o", output, "--frames", "0:1"]) == 1
    _assert_one_error_line(capsys, "--frames", "mesh")
    assert decode.main([nrep, "-o", output, "--kind", "cloud"]) == 2
    assert "argument --kind" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.obj", "out.stl", "out.xyz", "out.pcd"])
def test_decode_refuses_shape_outputs_for_an_image(image_nrep, tmp_path, capsys, name):
    _, nrep = image_nrep
    assert decode.main([str(nrep), "-o", str(tmp_path / name)]) == 1
    _assert_one_error_line(capsys, "3-D shape", "image", ".png")
    assert decode.main([str(nrep), "-o", str(tmp_path / "out.npy"), "--kind", "voxels"]) == 1
    _assert_one_error_line(capsys, "--kind", "image")
    assert list(tmp_path.iterdir()) == []


# ---- info --------------------------------------------------------------------------------------


def test_info_of_a_mesh_gives_grid_frame_counts_and_shape_metrics(box_fit, capsys):
    nrep = box_fit["nrep"]
    metadata = neurep.open(nrep).metadata
    config, quality = metadata["modality"]["configuration"], metadata["quality"]
    file_bytes = nrep.stat().st_size
    assert info.main([str(nrep)]) == 0
    out = capsys.readouterr().out
    assert f"mesh (trimesh), grid 8^3, fill solid, pitch {config['pitch']:.4g}" in out
    assert "box.obj: 8 vertices, 12 faces" in out
    assert "[4.5, -1, -1.5] to [5.5, 1, 1.5] (the voxels cover" in out
    assert f"{file_bytes:,} bytes, {file_bytes * 8 / 512:.4f} bits per voxel (8^3 = 512" in out
    assert f"IoU {quality['iou']:.4f}" in out and f"F-score {quality['f_score']:.4f}" in out
    assert f"({quality['chamfer_l1_normalised']:.4g} of the diagonal)" in out
    assert " bpp" not in out and "MS-SSIM" not in out

    assert info.main([str(nrep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bpp"] is None and report["num_pixels"] is None and report["video"] is None
    assert report["psnr"] == quality["psnr"] == quality["occupancy_psnr"]
    shape = report["shape"]
    assert shape["modality"] == "mesh" and shape["kind"] == "trimesh"
    assert shape["grid_shape"] == [8, 8, 8] and shape["grid"] == "8^3" and shape["voxels"] == 512
    assert shape["fill"] == "solid" and shape["pitch"] == config["pitch"] > 0
    np.testing.assert_allclose(shape["bounds"], _box().bounds)
    pitch, origin = shape["pitch"], np.asarray(config["origin"])
    np.testing.assert_allclose(shape["grid_bounds"], [origin - pitch / 2, origin + 7.5 * pitch])
    low, high = np.asarray(shape["grid_bounds"])
    assert (low < _box().bounds[0]).all() and (high > _box().bounds[1]).all()  # grid holds the box
    assert (shape["vertices"], shape["faces"], shape["source"]) == (8, 12, "box.obj")
    assert shape["points"] is None and shape["occupied_voxels"] is None
    assert shape["bits_per_voxel"] == pytest.approx(file_bytes * 8 / 512)
    for key in ("iou", "occupancy_psnr", "chamfer_l1", "chamfer_l1_normalised", "f_score"):
        assert shape[key] == quality[key], key
    assert 0 < shape["iou"] <= 1 and 0 < shape["f_score"] <= 1
    assert 0 < shape["chamfer_l1_normalised"] < shape["chamfer_l1"]  # the diagonal is > 1


def test_info_of_points_and_of_a_grid_gives_their_counts(cloud_fit, grid_fit, capsys):
    assert info.main([str(cloud_fit["nrep"])]) == 0
    out = capsys.readouterr().out
    assert "points (points_array), grid 8^3, fill points" in out
    assert "cloud.xyz: 500 points" in out
    assert info.main([str(cloud_fit["nrep"]), "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)["shape"]
    assert shape["points"] == 500 and shape["vertices"] is None and shape["faces"] is None
    occupied = int(grid_fit["grid"].sum())
    assert info.main([str(grid_fit["nrep"])]) == 0
    out = capsys.readouterr().out
    assert "voxels (numpy_voxels), grid 8^3, fill grid, pitch 1" in out
    assert f"grid.npy: {occupied} occupied voxels" in out
    assert "[-0.5, -0.5, -0.5] to [7.5, 7.5, 7.5]" in out
    assert info.main([str(grid_fit["nrep"]), "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)["shape"]
    assert shape["occupied_voxels"] == occupied and shape["points"] is None


def test_info_of_an_image_has_no_shape_block(image_nrep, capsys):
    _, nrep = image_nrep
    assert info.main([str(nrep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] is None and report["bpp"] > 0
