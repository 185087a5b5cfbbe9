"""Write a decoded object (numpy array, torch tensor or PIL image) as .png, .tif or .npy; a
decoded video as a video file (.mp4, .mkv, ...) or a folder of PNG frames; a decoded shape
as a mesh file (.obj, .ply, .stl, .off, .glb) or a point-cloud file (.ply, .xyz, .pcd).
Every file is written atomically: a temporary file in the same folder, then ``os.replace``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neurep.cli._common import CommandError
from neurep.modalities._video_io import WRITE_FORMATS, import_av, write_frames, write_video

IMAGE_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
VIDEO_SUFFIXES = tuple(WRITE_FORMATS)  # .mp4, .m4v, .mov, .mkv, .avi, .webm
#: What each kind of shape decode is written as (trimesh; .pcd through open3d).
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")
POINT_SUFFIXES = (".ply", ".xyz", ".pcd")
SHAPE_FILE_SUFFIXES = tuple(dict.fromkeys((*MESH_SUFFIXES, *POINT_SUFFIXES)))


def write_decoded(obj: Any, path: Path, *, channels_first: bool) -> None:
    """Write ``obj`` to ``path`` in the format its suffix names, atomically.

    ``channels_first``: a 3-D tensor is ``CxHxW`` (image modality) and is written ``HxWxC``.
    """
    suffix = path.suffix.lower()
    temporary = path.with_name(f".{path.name}.partial")
    try:
        if suffix == ".npy":
            with open(temporary, "wb") as handle:
                np.save(handle, _as_numpy(obj, channels_first=False), allow_pickle=False)
        elif suffix in IMAGE_FORMATS:
            _as_pil(obj, suffix, channels_first=channels_first).save(
                temporary, format=IMAGE_FORMATS[suffix]
            )
        else:
            raise CommandError(f"{path}: cannot write {suffix or 'files without a suffix'}")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _as_numpy(obj: Any, *, channels_first: bool) -> np.ndarray:
    """``obj`` as numpy; a channels-first tensor comes back ``HxWxC``."""
    if isinstance(obj, np.ndarray):
        return obj
    if _is_tensor(obj):
        import torch

        tensor = obj.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()  # numpy has no bfloat16
        values = tensor.numpy()
        if channels_first and values.ndim == 3:
            values = values.transpose(1, 2, 0)
        return values
    if _is_pil(obj):
        return np.asarray(obj)
    raise CommandError(f"cannot write a decoded {type(obj).__name__} to a file")


def _as_pil(obj: Any, suffix: str, *, channels_first: bool) -> Any:
    """``obj`` as a PIL image that ``suffix``'s format can hold, or CommandError saying why not."""
    from PIL import Image

    if _is_pil(obj):
        if suffix == ".png" and obj.mode in ("F", "I", "CMYK", "YCbCr", "LAB", "HSV"):
            raise CommandError(f"PNG cannot hold a PIL {obj.mode} image; write .tif or .npy")
        return obj
    values = _as_numpy(obj, channels_first=channels_first)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    kind = values.dtype.kind
    if values.ndim == 2 and kind == "b":
        return Image.fromarray(values)
    if values.dtype == np.uint8 and (
        values.ndim == 2 or (values.ndim == 3 and values.shape[2] <= 4)
    ):
        return Image.fromarray(values)
    if values.ndim == 2 and values.dtype == np.uint16:
        return Image.frombytes("I;16", values.shape[::-1], values.astype("<u2").tobytes())
    if values.ndim == 2 and kind == "f" and suffix != ".png":
        return Image.fromarray(values.astype(np.float32))
    if values.ndim == 2 and kind in "iu" and suffix != ".png" and _fits_int32(values):
        return Image.fromarray(values.astype(np.int32))
    raise CommandError(
        f"cannot write a {values.dtype} array of shape {tuple(values.shape)} as "
        f"{suffix.lstrip('.').upper()}; write .npy instead"
        + (" or .tif" if suffix == ".png" and values.ndim == 2 else "")
    )


def _fits_int32(values: np.ndarray) -> bool:
    info = np.iinfo(np.int32)
    return values.size == 0 or (int(values.min()) >= info.min and int(values.max()) <= info.max)


def _is_tensor(obj: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _is_pil(obj: Any) -> bool:
    import sys

    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(obj, pil_image.Image)


# ---- video -------------------------------------------------------------------------------------


def video_frames(
    obj: Any, *, channels_first: bool, value_range: tuple[float, float]
) -> tuple[np.ndarray, bool]:
    """A decoded clip as ``(T, H, W, C)`` uint8 for a video file or PNG frames, and whether
    its values were scaled to get there.

    ``channels_first``: ``obj`` is ``TxCxHxW`` (a torch-kind video). uint8 clips are taken
    as they are; any other dtype (uint16, float) is mapped linearly from ``value_range``
    (what the datum records its 0 and 1 stand for: 0..65535 for uint16, the clip's own
    min..max for floats) to 0..255, rounded and clipped.
    """
    values = _as_numpy(obj, channels_first=False)
    if values.ndim != 4:
        raise CommandError(f"cannot write a decoded array of shape {values.shape} as video")
    if channels_first:
        values = values.transpose(0, 2, 3, 1)
    if values.shape[3] not in (1, 3):
        raise CommandError(
            f"cannot write video frames of {values.shape[3]} channels (1 or 3); write .npy"
        )
    if values.dtype == np.uint8:
        return np.ascontiguousarray(values), False
    low, high = float(value_range[0]), float(value_range[1])
    out = np.empty(values.shape, np.uint8)
    for index, frame in enumerate(values):  # a frame at a time: no float64 copy of the clip
        unit = (frame.astype(np.float64) - low) / (high - low) if high > low else frame * 0.0
        out[index] = np.clip(np.rint(unit * 255.0), 0, 255)
    return out, True


def write_video_file(frames: np.ndarray, path: Path, fps: str) -> None:
    """``frames`` (T, H, W, C) uint8 as the video file ``path`` (atomically: a failure leaves
    nothing behind); CommandError naming the file if FFmpeg cannot write it."""
    av = import_av()  # MissingDependencyError naming the pip install, before any work
    try:
        write_video(frames, path, fps)
    except (ValueError, av.FFmpegError) as error:
        raise CommandError(f"{path}: cannot write the video ({error})") from None


def write_frame_folder(frames: np.ndarray, folder: Path, *, overwrite: bool) -> list[Path]:
    """``frames`` (T, H, W, C) uint8 as ``frame_00000.png``... in ``folder`` (created; all
    or nothing). A folder that holds files is refused unless ``overwrite``: then its
    ``frame_<digits>.png`` files are replaced and other files are kept."""
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{folder}: exists and is not a folder; cannot write frames into it")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise CommandError(
            f"{folder}: the folder is not empty (pass --overwrite to replace its frame_*.png)"
        )
    return write_frames(frames, folder, overwrite=overwrite)


# ---- shapes ------------------------------------------------------------------------------------


def write_mesh(mesh: Any, path: Path) -> None:
    """A ``trimesh.Trimesh`` as the mesh file ``path`` (.obj, .ply, .stl, .off, .glb)."""
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise CommandError(f"{path}: a mesh is written as {', '.join(MESH_SUFFIXES)}")
    _write_bytes(_exported(mesh, suffix), path)


def write_points(points: np.ndarray, path: Path) -> None:
    """``N x 3`` world points as the point-cloud file ``path`` (.ply, .xyz: trimesh;
    .pcd: open3d)."""
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise CommandError(f"{path}: points are written as {', '.join(POINT_SUFFIXES)}")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if suffix == ".pcd":
        _write_pcd(points, path)
        return
    from neurep.modalities._shape_grid import import_trimesh

    _write_bytes(_exported(import_trimesh().PointCloud(points), suffix), path)


def _exported(geometry: Any, suffix: str) -> bytes:
    data = geometry.export(file_type=suffix.lstrip("."))
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _write_bytes(data: bytes, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_pcd(points: np.ndarray, path: Path) -> None:
    from neurep.modalities._shape_grid import import_open3d

    open3d = import_open3d()
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(points))
    temporary = path.with_name(f".{path.stem}.partial.pcd")  # open3d goes by the suffix
    try:
        if not open3d.io.write_point_cloud(str(temporary), cloud):
            raise CommandError(f"{path}: open3d could not write the point cloud")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
