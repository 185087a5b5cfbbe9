"""3-D shapes: meshes, point clouds and voxel grids <-> an occupancy signal ``(1, 1, D, H, W)``.

Three modalities share one voxel core (:mod:`neurep.modalities._shape_grid`):

==========  ===================================================  =================================
modality    inputs                                               ``decode()`` gives
==========  ===================================================  =================================
``mesh``    .obj .ply .stl .off .glb .gltf files (trimesh; a     ``trimesh.Trimesh`` in world
            scene's meshes are flattened into one in world       coordinates (marching cubes of
            coordinates), ``trimesh.Trimesh`` / ``Scene``,       the decoded occupancy, scikit-
            ``open3d.geometry.TriangleMesh``                     image); open3d in, open3d out
``points``  .pcd (open3d), .xyz and face-less .ply (trimesh),    ``N x 3`` centres of the occupied
            ``trimesh.PointCloud``, ``open3d.geometry.           voxels in world coordinates, in
            PointCloud``, ``N x 3`` arrays and tensors (only     the input's container (numpy,
            with ``modality="points"``)                          torch, trimesh, open3d)
``voxels``  bool ``D x H x W`` numpy arrays and torch tensors    a bool grid of the same shape
            (chosen by dtype)                                    and container
==========  ===================================================  =================================

``datum.decode(kind="mesh" | "points" | "voxels")`` gives another kind instead: a
``trimesh.Trimesh``, a float64 numpy ``N x 3`` array, or a bool numpy grid.

Meshes and point clouds are voxelised into a cube of ``resolution`` voxels a side (default 32,
the paper's; 4 to 256), centred on the bounding box, the longest side spanning all but one
empty voxel at each end (aspect kept). ``fill="auto"`` fills watertight meshes (after merging
seam vertices) solid and keeps open ones as a surface shell; ``"solid"`` and ``"shell"``
force one. Points mark the voxel nearest each. The configuration records the grid's place in
world coordinates (``origin``: voxel (0, 0, 0)'s centre, ``pitch``), so decodes come back
where the input was; a voxel grid's world coordinates are its indices.

Quality (:meth:`ShapeAdapter.measure`): IoU of the decoded occupancy (at 0.5) against the
voxelised input, occupancy PSNR (the paper's: the decoded occupancy probabilities against the
0/1 grid, peak 1; also stored as ``psnr``), Chamfer-L1 and F-score at one voxel between surface
samples of the input and of the decoded mesh (points: the decoded voxel centres), in world
units and over the input's bounding-box diagonal (:mod:`neurep.modalities._shape_metrics`).

Needs ``pip install 'neurep[shapes]'`` (trimesh, scikit-image, scipy, open3d); each library is
imported only when used, and a missing one is a MissingDependencyError naming the extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurep.errors import InputError
from neurep.modalities import _shape_metrics as shape_metrics
from neurep.modalities._scaling import describe
from neurep.modalities._shape_config import (
    DEFAULT_KIND,
    MAX_GRID_VOXELS,
    ShapeConfiguration,
    check_configuration,
)
from neurep.modalities._shape_grid import (
    FILL_CHOICES,
    GridFrame,
    cube_frame,
    enclosed_voxels,
    grid_to_mesh,
    import_trimesh,
    occupied_centres,
    voxelize_mesh,
    voxelize_points,
)
from neurep.modalities._shape_read import (
    MESH_EXTENSIONS,
    POINT_EXTENSIONS,
    Geometry,
    as_open3d_mesh,
    as_trimesh,
    is_open3d,
    is_trimesh,
    ply_has_faces,
    points_as,
    points_of,
    read_geometry,
    read_npy,
)
from neurep.modalities.base import ModalityAdapter, is_path, path_suffix
from neurep.modalities.registry import register

DEFAULT_RESOLUTION = 32
MIN_RESOLUTION, MAX_RESOLUTION = 4, 256
#: Empty voxels kept between the object's bounding box and the cube's faces.
MARGIN = 1
DECODE_KINDS = ("mesh", "points", "voxels")


class ShapeAdapter(ModalityAdapter):
    """What the three shape modalities share: the occupancy signal, decoding to any kind,
    and the shape metrics. Subclasses read their inputs (:meth:`from_object`)."""

    spatial_ndim = 3
    loss: ClassVar[str] = "bce"
    item_label: ClassVar[str] = "shapes"
    decode_options: ClassVar[tuple[str, ...]] = ("kind",)
    Configuration: ClassVar[type] = ShapeConfiguration
    configuration: ShapeConfiguration

    def __init__(self, configuration: ShapeConfiguration) -> None:
        super().__init__(configuration)
        # What from_object read, for measuring against it without reading it again.
        # (geometry or None for a grid, bool grid, the object itself)
        self._input: tuple[Geometry | None, np.ndarray, Any] | None = None

    @property
    def preset_profile(self) -> str:
        return "shape"

    @property
    def frame(self) -> GridFrame:
        config = self.configuration
        return GridFrame(tuple(config.grid_shape), tuple(config.origin), float(config.pitch))

    # ---- back ----------------------------------------------------------------------------

    def from_signal(self, signal: torch.Tensor, kind: str | None = None) -> Any:
        """``(1, 1, D, H, W)`` occupancy in [0, 1] -> the input's kind, or ``kind``:
        "mesh" (``trimesh.Trimesh``), "points" (float64 ``N x 3``), "voxels" (bool grid)."""
        if kind is not None and kind not in DECODE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DECODE_KINDS)}, not {kind!r}")
        occupancy = self._occupancy(signal)
        config = self.configuration
        native = kind is None
        kind = kind or DEFAULT_KIND[config.kind]
        if kind == "voxels":
            grid = occupancy >= 0.5
            return torch.from_numpy(grid) if native and config.kind == "torch_voxels" else grid
        if kind == "mesh":
            mesh = grid_to_mesh(occupancy, self.frame)
            return as_open3d_mesh(mesh) if native and config.kind == "open3d_mesh" else mesh
        points = occupied_centres(occupancy, self.frame)
        return points_as(points, config.kind, config.dtype) if native else points

    def _occupancy(self, signal: torch.Tensor) -> np.ndarray:
        expected = self.signal_shape()
        if not isinstance(signal, torch.Tensor) or tuple(signal.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}.from_signal expects a tensor of shape {expected}, got "
                f"{describe(signal)}"
            )
        occupancy = signal[0, 0].detach().to("cpu", torch.float32).numpy()
        return np.nan_to_num(occupancy, nan=0.0)  # NaN is empty for every kind of decode

    def signal_shape(self) -> tuple[int, ...]:
        return (1, 1, *self.configuration.grid_shape)

    # ---- configuration -------------------------------------------------------------------

    @classmethod
    def check_configuration(cls, configuration: ShapeConfiguration) -> None:
        check_configuration(configuration, cls.name)

    # ---- measuring -----------------------------------------------------------------------

    @property
    def value_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    def as_array(self, obj: Any) -> np.ndarray:
        """``obj`` (the input, or any kind of decode) as a ``(1, 1, D, H, W)`` float64 0/1
        occupancy grid in this datum's frame."""
        return self._grid_of(obj).astype(np.float64)[None, None]

    def measure(self, original: Any, datum: Any) -> dict[str, Any]:
        """The shape metrics of ``datum`` (a NeuralDatum of this adapter) against ``original``:
        IoU and occupancy PSNR from the decoded probabilities, surface metrics from the
        decoded mesh (points: the decoded voxel centres)."""
        reference_grid, reference_surface = self._reference(original)
        signal = datum.decode_signal()  # (1, 1, D, H, W) probabilities
        occupancy = self._occupancy(signal)
        decoded = self.from_signal(signal, kind="points" if self.name == "points" else "mesh")
        return self._metrics(reference_grid, reference_surface, occupancy, decoded)

    def measure_psnr(self, original: Any, datum: Any) -> float:
        """The occupancy PSNR that :meth:`measure` reports, without the surface metrics."""
        reference_grid, _ = self._reference(original)
        occupancy = self._occupancy(datum.decode_signal())
        return shape_metrics.occupancy_psnr(occupancy, reference_grid)

    def quality(self, original: Any, decoded: Any) -> dict[str, Any]:
        """The shape metrics of any decode of this datum (``decode()``, or ``decode(kind=
        ...)``) against ``original``; a mesh or points decode is voxelised in the datum's
        frame for IoU (a mesh: the voxels whose centres it encloses), and occupancy PSNR is
        then measured on 0/1 values."""
        reference_grid, reference_surface = self._reference(original)
        occupancy = self._grid_of(decoded, decoded=True).astype(np.float32)
        return self._metrics(reference_grid, reference_surface, occupancy, decoded)

    def _metrics(
        self, reference: np.ndarray, reference_surface: Any, occupancy: np.ndarray, decoded: Any
    ) -> dict[str, Any]:
        psnr = shape_metrics.occupancy_psnr(occupancy, reference)
        decoded_surface = _surface_of(decoded, self.frame, occupancy)
        # measured in voxels (huge world coordinates overflow areas and squared distances),
        # then Chamfer in world units
        pitch = float(self.configuration.pitch)
        low, high = (np.asarray(bound, dtype=np.float64) for bound in self.configuration.bounds)
        distances = shape_metrics.surface_distances(
            reference_surface,
            decoded_surface,
            tau=1.0,
            diagonal=float(np.linalg.norm((high - low) / pitch)),
        )
        if distances["chamfer_l1"] is not None:
            distances["chamfer_l1"] *= pitch
        return {
            "psnr": psnr,
            "ms_ssim": None,
            "iou": shape_metrics.iou(occupancy >= 0.5, reference),
            "occupancy_psnr": psnr,
            **distances,
        }

    def _reference(self, original: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """The input's grid and surface samples in voxel coordinates (from what from_object
        read, if it was ``original``; else ``original`` is read again with this datum's
        settings)."""
        source = self._input
        if source is None or source[2] is not original:
            adapter, _ = self.read_again(original)
            if adapter.frame != self.frame:
                raise ValueError(
                    f"{describe(original)} is not this datum's input: it voxelises into another "
                    "grid frame"
                )
            source = adapter._input
        geometry, grid, _ = source
        if geometry is None:  # a voxel grid: its own surface
            surface = shape_metrics.surface_samples(grid_to_mesh(grid, _voxel_frame(self.frame)))
        elif geometry.is_mesh:
            surface = shape_metrics.surface_samples(_in_voxels(geometry.trimesh(), self.frame))
        else:
            surface = shape_metrics.surface_samples(points=self.frame.to_index(geometry.points))
        return grid, surface

    def read_again(self, original: Any) -> tuple[ShapeAdapter, torch.Tensor]:
        """``original`` read with this datum's settings (its grid must match)."""
        raise NotImplementedError

    def _grid_of(self, obj: Any, decoded: bool = False) -> np.ndarray:
        """A bool grid in this datum's frame of a grid, a mesh or points (any container).

        A mesh is voxelised as the input was, or, ``decoded`` (a marching-cubes surface of
        this frame), as the voxels whose centres it encloses."""
        if is_path(obj) or is_trimesh(obj, "Scene"):  # an input no decode is: read it again
            return self._reference(obj)[0]
        if isinstance(obj, np.ndarray | torch.Tensor) and obj.ndim == 3:
            grid = np.asarray(obj.detach().cpu() if isinstance(obj, torch.Tensor) else obj)
            if grid.shape != tuple(self.configuration.grid_shape):
                raise ValueError(f"a grid of shape {grid.shape} is not this datum's")
            return grid >= 0.5 if grid.dtype != bool else grid
        mesh = as_trimesh(obj)
        if mesh is not None and decoded:
            return enclosed_voxels(mesh, self.frame)
        if mesh is not None:
            return voxelize_mesh(mesh, self.frame, solid=self.configuration.fill == "solid")
        return voxelize_points(points_of(obj), self.frame)

    def __repr__(self) -> str:
        config = self.configuration
        return (
            f"{type(self).__name__}(kind={config.kind!r}, grid={config.grid_shape}, "
            f"fill={config.fill!r}, pitch={config.pitch:.4g})"
        )


class MeshAdapter(ShapeAdapter):
    """Triangle meshes, voxelised into a cube; decoded by marching cubes."""

    name: ClassVar[str] = "mesh"
    description: ClassVar[str] = (
        "mesh files (.obj .ply .stl .off .glb .gltf, through trimesh), trimesh.Trimesh / "
        "Scene, open3d.geometry.TriangleMesh"
    )
    extensions: ClassVar[tuple[str, ...]] = MESH_EXTENSIONS
    read_options: ClassVar[tuple[str, ...]] = ("resolution", "fill")

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        if is_path(obj):
            suffix = path_suffix(obj)
            if suffix == ".ply":
                return ply_has_faces(Path(os.fspath(obj)))
            return suffix in MESH_EXTENSIONS
        if is_trimesh(obj, "Scene"):
            return not _only_point_clouds(obj)
        return is_trimesh(obj, "Trimesh") or is_open3d(obj, "TriangleMesh")

    @classmethod
    def from_object(
        cls, obj: Any, *, resolution: Any = DEFAULT_RESOLUTION, fill: Any = "auto"
    ) -> tuple[MeshAdapter, torch.Tensor]:
        """Read a mesh and voxelise it: signal ``(1, 1, R, R, R)`` float32 0/1."""
        resolution = _resolution(resolution)
        if fill not in FILL_CHOICES:
            raise InputError(f"fill must be one of {', '.join(FILL_CHOICES)}, not {fill!r}")
        geometry = read_geometry(obj, "mesh")
        mesh = geometry.trimesh()
        low, high = mesh.bounds
        frame = cube_frame(low, high, resolution, MARGIN)
        solid = _is_watertight(mesh, frame) if fill == "auto" else fill == "solid"
        grid = voxelize_mesh(mesh, frame, solid)
        return _adapter(cls, geometry, frame, grid, "solid" if solid else "shell", obj)

    def read_again(self, original: Any) -> tuple[ShapeAdapter, torch.Tensor]:
        fill = self.configuration.fill
        return self.from_object(original, resolution=self.configuration.grid_shape[0], fill=fill)


class PointsAdapter(ShapeAdapter):
    """Point clouds: each point marks its nearest voxel; decoded to occupied voxel centres."""

    name: ClassVar[str] = "points"
    description: ClassVar[str] = (
        "point clouds: .pcd (open3d), .xyz, .ply without faces, trimesh.PointCloud, "
        "open3d.geometry.PointCloud, Nx3 arrays and .npy files (with modality='points')"
    )
    extensions: ClassVar[tuple[str, ...]] = (*POINT_EXTENSIONS, ".ply")
    read_options: ClassVar[tuple[str, ...]] = ("resolution",)

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        if is_path(obj):
            suffix = path_suffix(obj)
            if suffix == ".ply":
                return not ply_has_faces(Path(os.fspath(obj)))
            return suffix in POINT_EXTENSIONS
        if is_trimesh(obj, "Scene"):
            return _only_point_clouds(obj)
        return is_trimesh(obj, "PointCloud") or is_open3d(obj, "PointCloud")

    @classmethod
    def from_object(
        cls, obj: Any, *, resolution: Any = DEFAULT_RESOLUTION
    ) -> tuple[PointsAdapter, torch.Tensor]:
        """Read points and voxelise them: signal ``(1, 1, R, R, R)`` float32 0/1."""
        resolution = _resolution(resolution)
        geometry = read_geometry(obj, "points")
        low, high = geometry.points.min(axis=0), geometry.points.max(axis=0)
        frame = cube_frame(low, high, resolution, MARGIN)
        grid = voxelize_points(geometry.points, frame)
        return _adapter(cls, geometry, frame, grid, "points", obj)

    def read_again(self, original: Any) -> tuple[ShapeAdapter, torch.Tensor]:
        return self.from_object(original, resolution=self.configuration.grid_shape[0])


class VoxelsAdapter(ShapeAdapter):
    """Bool voxel grids, kept as they are; their world coordinates are their indices."""

    name: ClassVar[str] = "voxels"
    description: ClassVar[str] = (
        "bool DxHxW numpy arrays and torch tensors (voxel grids; .npy files of them with "
        "modality='voxels')"
    )

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        if isinstance(obj, np.ndarray):
            return obj.ndim == 3 and obj.dtype == bool
        return isinstance(obj, torch.Tensor) and obj.ndim == 3 and obj.dtype == torch.bool

    @classmethod
    def from_object(cls, obj: Any) -> tuple[VoxelsAdapter, torch.Tensor]:
        """A bool ``D x H x W`` grid (array, tensor, or a ``.npy`` file of one, with
        ``modality="voxels"``) as the signal ``(1, 1, D, H, W)`` float32 0/1."""
        given, source = obj, None
        if is_path(obj):
            path = Path(os.fspath(obj))
            if path.suffix.lower() != ".npy" or not path.is_file():
                raise InputError(f"{path}: the voxels modality reads .npy files of bool grids")
            obj, source = read_npy(path), path.name
        if isinstance(obj, torch.Tensor) and obj.dtype == torch.bool and obj.ndim == 3:
            grid, kind = obj.detach().cpu().numpy(), "torch_voxels"
        elif isinstance(obj, np.ndarray) and obj.dtype == bool and obj.ndim == 3:
            grid, kind = obj, "numpy_voxels"
        else:
            where = "" if source is None else f"{source}: "
            raise InputError(
                f"{where}a voxel grid is a bool DxHxW numpy array or torch tensor, not "
                f"{describe(obj)} (threshold it first, e.g. grid > 0)"
            )
        if grid.size == 0:
            raise InputError(f"the voxel grid is empty (shape {grid.shape})")
        if grid.size > MAX_GRID_VOXELS:
            raise InputError(f"the voxel grid has {grid.size} voxels; at most {MAX_GRID_VOXELS}")
        frame = GridFrame(tuple(int(s) for s in grid.shape), (0.0, 0.0, 0.0), 1.0)
        grid = np.ascontiguousarray(grid)
        return _adapter(cls, None, frame, grid, "grid", given, kind=kind, source=source)

    def read_again(self, original: Any) -> tuple[ShapeAdapter, torch.Tensor]:
        adapter, signal = self.from_object(original)
        if adapter.configuration.grid_shape != self.configuration.grid_shape:
            raise ValueError("the voxel grid's shape is not this datum's")
        return adapter, signal


# ---- helpers --------------------------------------------------------------------------------


def _adapter(
    cls: type[ShapeAdapter],
    geometry: Geometry | None,
    frame: GridFrame,
    grid: np.ndarray,
    fill: str,
    obj: Any,
    kind: str | None = None,
    source: str | None = None,
) -> tuple[ShapeAdapter, torch.Tensor]:
    """The adapter and signal for a voxelised input (``geometry`` None for a voxel grid)."""
    if geometry is None:
        low, high = [-0.5] * 3, [s - 0.5 for s in frame.shape]  # the grid's own box
        vertices, faces, dtype = int(grid.sum()), 0, "bool"
    else:
        coordinates = geometry.coordinates
        if geometry.is_mesh:  # the vertices its faces use, as the frame was placed around
            coordinates = coordinates[np.unique(geometry.faces)]
        low, high = coordinates.min(axis=0).tolist(), coordinates.max(axis=0).tolist()
        vertices = len(geometry.coordinates)
        faces = len(geometry.faces) if geometry.is_mesh else 0
        source, dtype, kind = geometry.source, geometry.dtype, geometry.kind
    configuration = ShapeConfiguration(
        kind=kind,
        grid_shape=list(frame.shape),
        origin=list(frame.origin),
        pitch=frame.pitch,
        fill=fill,
        bounds=[list(map(float, low)), list(map(float, high))],
        vertices=vertices,
        faces=faces,
        source=source,
        dtype=dtype,
    )
    adapter = cls(configuration)
    adapter._input = (geometry, grid, obj)
    signal = torch.from_numpy(grid.astype(np.float32))[None, None]
    return adapter, signal


def _resolution(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"resolution must be an integer, not {value!r:.40}")
    if not MIN_RESOLUTION <= value <= MAX_RESOLUTION:
        raise InputError(
            f"resolution must be {MIN_RESOLUTION} to {MAX_RESOLUTION} voxels a side, not {value}"
        )
    return int(value)


def _is_watertight(mesh: Any, frame: GridFrame) -> bool:
    """Watertight once coincident vertices are merged (texture and normal seams split them);
    judged in voxel coordinates, where trimesh's merging tolerance suits any scale."""
    local = frame.to_index(mesh.vertices)  # (V, 3)
    merged = import_trimesh().Trimesh(local, np.asarray(mesh.faces), process=False)
    merged.remove_unreferenced_vertices()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(merged.is_watertight)


def _only_point_clouds(scene: Any) -> bool:
    parts = list(scene.geometry.values())
    return bool(parts) and all(is_trimesh(part, "PointCloud") for part in parts)


def _surface_of(decoded: Any, frame: GridFrame, occupancy: np.ndarray) -> np.ndarray | None:
    """Surface samples of a decode in ``frame``'s voxel coordinates: a mesh's surface, points
    as they are, a grid's marching cubes surface."""
    if isinstance(decoded, np.ndarray | torch.Tensor) and decoded.ndim == 3:
        return shape_metrics.surface_samples(grid_to_mesh(occupancy, _voxel_frame(frame)))
    mesh = as_trimesh(decoded)
    if mesh is not None:
        return shape_metrics.surface_samples(_in_voxels(mesh, frame))
    return shape_metrics.surface_samples(points=frame.to_index(points_of(decoded)))


def _voxel_frame(frame: GridFrame) -> GridFrame:
    """``frame``'s grid with world coordinates equal to voxel indices."""
    return GridFrame(frame.shape, (0.0, 0.0, 0.0), 1.0)


def _in_voxels(mesh: Any, frame: GridFrame) -> Any:
    """A trimesh mesh moved into ``frame``'s voxel coordinates."""
    return import_trimesh().Trimesh(frame.to_index(mesh.vertices), mesh.faces, process=False)


# Before image (10): a bool 3-D array is a voxel grid. Points before meshes: a .ply without
# faces is a point cloud.
register(VoxelsAdapter, priority=5)
register(PointsAdapter, priority=28)
register(MeshAdapter, priority=30)
