"""Pure-numpy conversions between Slicer's view of a cine and the cineprop server's.

Array layouts (the one thing to get right here):

* **Slicer** ``slicer.util.arrayFromVolume(node)`` returns ``K×J×I`` (numpy index ``[k, j, i]``,
  reversed IJK). A 2D frame of a Sequence is a volume with one slice: ``1×J×I``, or ``1×J×I×C``
  for a colour frame (ultrasound, endoscopy).
* **cineprop** (server, files, :mod:`cineprop.io`) and this package: a cine is ``I×J×T``
  (``H×W×T``, numpy index ``[i, j, t]``) with the frames on the last axis. A 3D volume loaded in
  Slicer with its frames on K is the same array transposed: ``cine = kji.transpose(2, 1, 0)``.

Geometry is Slicer's ``IJKToRAS`` 4×4 matrix: column ``c`` of the upper 3×3 block is the
direction of voxel axis ``c`` scaled by its spacing, the last column is the origin (RAS, mm).
Files are written by SimpleITK in LPS (see :mod:`CinePropLib.volumefiles`); :func:`grid_to_lps`
and :func:`grid_from_lps` convert.

A Sequence of 2D frames becomes one ``I×J×T`` cine whose 3D geometry is frame 0's ``IJKToRAS``
(frame ``t`` sits on slice ``k = t``); each frame keeps its own matrix, so results go back to the
exact frame they came from even when frames move (navigated ultrasound).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: Absolute tolerance (mm) when comparing frame geometries.
GEOMETRY_TOLERANCE = 1e-4

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ConversionError(ValueError):
    """A cine, frame list or label array that cannot be converted; the message says why."""


# --------------------------------------------------------------------------------------------
# Axis order
# --------------------------------------------------------------------------------------------

def kji_to_ijk(array: np.ndarray) -> np.ndarray:
    """Slicer ``K×J×I`` → cineprop ``I×J×K`` (a contiguous copy)."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ConversionError(f"expected a 3D K×J×I array, got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def ijk_to_kji(array: np.ndarray) -> np.ndarray:
    """cineprop ``I×J×K`` → Slicer ``K×J×I`` (a contiguous copy, what ``updateVolumeFromArray`` takes)."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ConversionError(f"expected a 3D I×J×K array, got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(2, 1, 0))


def to_grey(array: np.ndarray, components: bool) -> np.ndarray:
    """Average the trailing colour axis (``...×C``) when ``components``; float32 either way."""
    array = np.asarray(array)
    return (array.astype(np.float32).mean(axis=-1) if components else array.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

def as_grid(ijk_to_ras: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Validate an ``IJKToRAS`` matrix: 4×4, finite, invertible upper 3×3, last row 0 0 0 1."""
    grid = np.asarray(ijk_to_ras, dtype=np.float64)
    if grid.shape != (4, 4):
        raise ConversionError(f"IJKToRAS must be 4×4, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise ConversionError("IJKToRAS contains NaN or infinite values")
    if not np.allclose(grid[3], [0, 0, 0, 1]):
        raise ConversionError(f"IJKToRAS last row must be 0 0 0 1, got {grid[3].tolist()}")
    if abs(np.linalg.det(grid[:3, :3])) < 1e-12:
        raise ConversionError("IJKToRAS is singular (a zero spacing or collinear axes)")
    return grid.copy()


def grid_spacing(ijk_to_ras: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along I, J, K (mm): the column norms of the 3×3 block."""
    grid = as_grid(ijk_to_ras)
    return tuple(float(v) for v in np.linalg.norm(grid[:3, :3], axis=0))  # type: ignore[return-value]


def grid_from_parts(spacing: Sequence[float], origin: Sequence[float],
                    directions: Sequence[Sequence[float]] | np.ndarray | None = None) -> np.ndarray:
    """Build ``IJKToRAS`` from spacing, RAS origin and a 3×3 matrix whose columns are the axis directions."""
    dirs = np.eye(3) if directions is None else np.asarray(directions, dtype=np.float64).reshape(3, 3)
    grid = np.eye(4)
    grid[:3, :3] = dirs * np.asarray(spacing, dtype=np.float64)[None, :]
    grid[:3, 3] = np.asarray(origin, dtype=np.float64)
    return as_grid(grid)


def grid_to_lps(ijk_to_ras: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``IJKToRAS`` → ITK/SimpleITK ``(spacing, origin, direction)`` in LPS (direction row-major 3×3)."""
    lps = _LPS @ as_grid(ijk_to_ras)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing[None, :]
    return (tuple(float(s) for s in spacing), tuple(float(o) for o in lps[:3, 3]),
            tuple(float(d) for d in direction.ravel()))


def grid_from_lps(spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """ITK ``(spacing, origin, direction)`` in LPS (as SimpleITK gives them) → ``IJKToRAS``."""
    if len(spacing) != 3:
        raise ConversionError(f"expected a 3D geometry, got {len(spacing)}D")
    return as_grid(_LPS @ grid_from_parts(spacing, origin, np.asarray(direction).reshape(3, 3)))


def same_grid(a: np.ndarray, b: np.ndarray, tolerance: float = GEOMETRY_TOLERANCE) -> bool:
    """Whether two ``IJKToRAS`` matrices place voxels at the same positions (within ``tolerance`` mm)."""
    return bool(np.allclose(as_grid(a), as_grid(b), atol=tolerance, rtol=0.0))


# --------------------------------------------------------------------------------------------
# Cines: a 3D volume or a list of 2D frames → one I×J×T array with its geometry
# --------------------------------------------------------------------------------------------

@dataclass
class CineArrays:
    """A cine as the server wants it.

    Attributes:
        frames: ``I×J×T`` float32 (frames on the last axis), ``T ≥ 2``.
        ijk_to_ras: 4×4 geometry of the 3D volume the cine is written as.
        name: a display name (node name), also used to name uploads.
        frame_grids: for a Sequence input, each frame's own ``IJKToRAS`` (``T`` matrices); ``None``
            for a 3D volume input.
    """

    frames: np.ndarray
    ijk_to_ras: np.ndarray
    name: str = "cine"
    frame_grids: list[np.ndarray] | None = field(default=None)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float32)
        self.ijk_to_ras = as_grid(self.ijk_to_ras)
        if self.frames.ndim != 3:
            raise ConversionError(f"{self.name}: a cine must be I×J×T, got shape {self.frames.shape}")
        if self.frames.shape[2] < 2:
            raise ConversionError(f"{self.name}: a cine needs at least 2 frames, got {self.frames.shape[2]}")
        if not np.isfinite(self.frames).all():
            raise ConversionError(f"{self.name}: the cine contains NaN or infinite intensities")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[2])

    @property
    def label_shape(self) -> tuple[int, int, int]:
        """Shape of a label array for this cine (``I×J×T``)."""
        return tuple(self.frames.shape)  # type: ignore[return-value]


def cine_from_volume(array_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str = "cine",
                     components: bool = False) -> CineArrays:
    """A 3D volume node's array (``K×J×I``, frames on K; ``K×J×I×C`` with ``components``) → cine."""
    array = to_grey(array_kji, components)
    if array.ndim != 3:
        raise ConversionError(f"{name}: expected a 3D volume (frames on the last axis), got shape {array.shape}")
    return CineArrays(kji_to_ijk(array), ijk_to_ras, name)


def frame_to_ij(frame_kji: np.ndarray, components: bool = False) -> np.ndarray:
    """One 2D frame as Slicer gives it (``1×J×I``, ``J×I``, or with a trailing ``C``) → ``I×J`` float32."""
    frame = to_grey(frame_kji, components)
    if frame.ndim == 3:
        if frame.shape[0] != 1:
            raise ConversionError(f"a Sequence frame must be a single 2D slice, got {frame.shape[0]} slices")
        frame = frame[0]
    if frame.ndim != 2:
        raise ConversionError(f"a Sequence frame must be 2D, got shape {frame.shape}")
    return np.ascontiguousarray(frame.T)


def pick_slice(frame_kji: np.ndarray, grid: np.ndarray, slice_index: int | None,
               components: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Slice position ``k`` of a 3D frame (``K×J×I``) → (``1×J×I`` frame, its ``IJKToRAS``, origin at ``k``).

    A frame that is already 2D (``K = 1``) is returned as is; a 3D frame needs ``slice_index``.
    """
    frame = np.asarray(frame_kji)
    positions = frame.shape[0] if frame.ndim == (4 if components else 3) else 1
    if positions == 1:
        return frame, np.asarray(grid, dtype=np.float64)
    if slice_index is None or not 0 <= int(slice_index) < positions:
        raise ConversionError(f"the frames have {positions} slice positions (a stack over time); choose one of "
                              f"0..{positions - 1} in 'Slice position'")
    k = int(slice_index)
    return frame[k:k + 1], grid_at_slice(grid, k)


def grid_at_slice(grid: np.ndarray, k: int) -> np.ndarray:
    """The ``IJKToRAS`` of slice ``k`` alone: the same axes, the origin moved ``k`` steps along K."""
    moved = as_grid(grid)
    moved[:3, 3] = moved[:3, :3] @ np.array([0.0, 0.0, float(k)]) + moved[:3, 3]
    return moved


def cine_from_frames(frames_kji: Sequence[np.ndarray], grids: Sequence[np.ndarray], name: str = "cine",
                     components: bool = False, slice_index: int | None = None) -> CineArrays:
    """A Sequence's 2D frames (each ``1×J×I``) and their ``IJKToRAS`` → one ``I×J×T`` cine.

    Frames with several slice positions (``K×J×I``) give the cine of position ``slice_index``.

    Raises:
        ConversionError: no frames, a frame count that differs from the matrices, frames of
            different sizes, or 3D frames without a valid ``slice_index``.
    """
    if len(frames_kji) == 0:
        raise ConversionError(f"{name}: the Sequence has no frames")
    if len(frames_kji) != len(grids):
        raise ConversionError(f"{name}: {len(frames_kji)} frames but {len(grids)} geometries")
    picked = [pick_slice(f, g, slice_index, components) for f, g in zip(frames_kji, grids)]
    frames_kji, grids = [p[0] for p in picked], [p[1] for p in picked]
    planes = [frame_to_ij(f, components) for f in frames_kji]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise ConversionError(f"{name}: the Sequence frames differ in size {sorted(shapes)}; a cine needs one size")
    return CineArrays(np.stack(planes, axis=-1), grids[0], name, [as_grid(g) for g in grids])


def frames_moved(cine: CineArrays) -> bool:
    """Whether a Sequence's frames do not all share frame 0's geometry (a moving probe)."""
    if not cine.frame_grids:
        return False
    return not all(same_grid(g, cine.frame_grids[0]) for g in cine.frame_grids)


# --------------------------------------------------------------------------------------------
# Label arrays: I×J×T ⇄ Slicer arrays (3D volume or per-frame)
# --------------------------------------------------------------------------------------------

def labels_from_volume(array_kji: np.ndarray) -> np.ndarray:
    """A 3D labelmap array (``K×J×I``) → ``I×J×T`` uint8."""
    return as_labels(kji_to_ijk(np.asarray(array_kji)))


def labels_to_volume(labels: np.ndarray) -> np.ndarray:
    """``I×J×T`` labels → ``K×J×I`` uint8 for a 3D labelmap / segment update."""
    return ijk_to_kji(as_labels(labels))


def labels_from_frames(frames_kji: Sequence[np.ndarray]) -> np.ndarray:
    """Per-frame label arrays (``1×J×I`` each, Slicer order) → ``I×J×T`` uint8."""
    if len(frames_kji) == 0:
        raise ConversionError("no label frames")
    planes = [frame_to_ij(f) for f in frames_kji]
    if len({p.shape for p in planes}) != 1:
        raise ConversionError("label frames differ in size")
    return as_labels(np.stack(planes, axis=-1))


def labels_to_frames(labels: np.ndarray) -> list[np.ndarray]:
    """``I×J×T`` labels → ``T`` arrays of ``1×J×I`` uint8 (Slicer order, one per Sequence item)."""
    labels = as_labels(labels)
    return [np.ascontiguousarray(labels[:, :, t].T[None]) for t in range(labels.shape[2])]


def as_labels(array: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
    """Validate integer labels (0 background, 1..255) and return uint8; optionally check the shape."""
    array = np.asarray(array)
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ConversionError(f"label shape {tuple(array.shape)} differs from the cine's {tuple(shape)}")
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise ConversionError(f"labels have unsupported type {array.dtype}")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and np.all(array == np.round(array))):
        raise ConversionError("labels must be whole numbers")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ConversionError(f"label values must be in 0..255, found {array.min():g}..{array.max():g}")
    return array.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Frame navigation in a 3D cine volume
# --------------------------------------------------------------------------------------------

def frame_center_ras(ijk_to_ras: np.ndarray, shape: Sequence[int], frame: int) -> tuple[float, float, float]:
    """RAS position (mm) of the centre of frame ``frame`` of an ``I×J×T`` cine volume."""
    grid = as_grid(ijk_to_ras)
    ijk = np.array([(shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0, float(frame), 1.0])
    return tuple(float(v) for v in (grid @ ijk)[:3])  # type: ignore[return-value]


def frame_at_ras(ijk_to_ras: np.ndarray, ras: Sequence[float], num_frames: int) -> int:
    """The frame (K index, clamped to ``0..num_frames-1``) nearest a RAS position."""
    ijk = np.linalg.solve(as_grid(ijk_to_ras), np.array([*map(float, ras[:3]), 1.0]))
    return int(min(max(round(float(ijk[2])), 0), num_frames - 1))
