"""Write and read cines and label volumes with their geometry (SimpleITK; bundled with 3D Slicer).

Arrays are ``I×J×T`` (cineprop order, see :mod:`CinePropLib.conversions`); geometry is Slicer's
``IJKToRAS``. Files are what the server reads (``.nii.gz`` or ``.nrrd``), in LPS like every ITK
file, so a cine written here and loaded in Slicer lies exactly where the node it came from lies.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CinePropLib.conversions import ConversionError, as_labels, grid_at_slice, grid_from_lps, grid_to_lps, ijk_to_kji

#: File endings written and read here.
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")


def _check_suffix(path: Path) -> None:
    if not path.name.lower().endswith(SUFFIXES):
        raise ConversionError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")


def _write(path: str | os.PathLike, array_ijk: np.ndarray, ijk_to_ras: np.ndarray) -> Path:
    p = Path(path)
    _check_suffix(p)
    image = sitk.GetImageFromArray(ijk_to_kji(array_ijk))  # SimpleITK arrays are K×J×I, like Slicer's
    spacing, origin, direction = grid_to_lps(ijk_to_ras)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return _save(image, p)


def _save(image: sitk.Image, p: Path) -> Path:
    """Write ``image`` to ``p`` atomically (a half-written file is never seen under ``p``)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".part{os.getpid()}-{p.name}")  # same suffix: ITK picks the writer by it
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def write_cine(path: str | os.PathLike, frames: np.ndarray, ijk_to_ras: np.ndarray) -> Path:
    """Write an ``I×J×T`` cine as float32 with geometry ``ijk_to_ras`` (atomically)."""
    return _write(path, np.asarray(frames, dtype=np.float32), ijk_to_ras)


def write_labels(path: str | os.PathLike, labels: np.ndarray, ijk_to_ras: np.ndarray) -> Path:
    """Write ``I×J×T`` labels as uint8 with geometry ``ijk_to_ras`` (atomically)."""
    return _write(path, as_labels(labels), ijk_to_ras)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D file → (``I×J×K`` array, ``IJKToRAS``).

    Raises:
        ConversionError: unreadable, not 3D, or several components per voxel.
    """
    p = Path(path)
    image = _read(p)
    if image.GetDimension() != 3:
        raise ConversionError(f"{p.name}: expected a 3D volume (I×J×T), got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(f"{p.name}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()}")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    return np.ascontiguousarray(array), grid_from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def _read(p: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError:
        raise ConversionError(f"{p.name}: not a readable image file") from None


def file_positions(path: str | os.PathLike) -> int:
    """Slice positions of a cine file: 1 for 3D (``I×J×T``) and ``H×W×1×T``, ``Z`` for ``H×W×Z×T``."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise ConversionError(f"{Path(path).name}: not a readable image file") from None
    size = reader.GetSize()
    return int(size[2]) if len(size) == 4 else 1


def read_cine_file(path: str | os.PathLike, slice_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A cine file → (``I×J×T`` array, ``IJKToRAS``): 3D with frames on K, or 4D ``H×W×Z×T``
    (dcm2niix cines are ``H×W×1×T``; a stack over time needs ``slice_index``).

    A 4D file's frame ``t`` is placed on slice ``k = t`` of the chosen slice's own grid (the file's
    spatial axes, the origin moved to that slice), the layout every cine here uses.

    Raises:
        ConversionError: unreadable, a stack without a valid ``slice_index``, or colour.
    """
    p = Path(path)
    image = _read(p)
    if image.GetDimension() == 3:
        return read_volume(p)
    size = image.GetSize()
    if image.GetDimension() != 4:
        raise ConversionError(f"{p.name}: expected a cine (I×J×T or H×W×Z×T); got size {size}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(f"{p.name}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()}")
    k = 0 if size[2] == 1 and slice_index in (None, 0) else slice_index
    if k is None or not 0 <= int(k) < size[2]:
        raise ConversionError(f"{p.name}: {size[2]} slice positions per time point; choose one of "
                              f"0..{size[2] - 1} in 'Slice position'")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(4, 4)[:3, :3]
    grid = grid_from_lps(image.GetSpacing()[:3], image.GetOrigin()[:3], direction.ravel().tolist())
    array = sitk.GetArrayFromImage(image)[:, int(k)]           # T×Z×J×I → T×J×I
    return np.ascontiguousarray(array.transpose(2, 1, 0)), grid_at_slice(grid, int(k))


def write_slice_labels(path: str | os.PathLike, labels: np.ndarray, slice_index: int, reference: str | os.PathLike,
                       base: str | os.PathLike | None = None) -> Path:
    """One slice position's ``I×J×T`` labels as a label file shaped and placed like the 4D ``reference``.

    The other positions come from ``base`` (a label file of the same shape, e.g. the study's current
    final label) or are 0. This is what the server takes for a 4D study (with ``slice_index``).
    """
    ref = _read(Path(reference))
    size = ref.GetSize()                                        # (I, J, Z, T)
    if len(size) != 4 or not 0 <= int(slice_index) < size[2]:
        raise ConversionError(f"{Path(reference).name}: slice position {slice_index} of size {size}")
    labels = as_labels(labels, (size[0], size[1], size[3]))
    array = np.zeros(size[::-1], dtype=np.uint8)                # T×Z×J×I
    if base is not None:
        other = sitk.GetArrayFromImage(_read(Path(base)))
        if other.shape != array.shape:
            raise ConversionError(f"{Path(base).name}: label shape {other.shape[::-1]} differs from the study's {size}")
        array[:] = as_labels(other)
    array[:, int(slice_index)] = labels.transpose(2, 1, 0)
    image = sitk.GetImageFromArray(array, isVector=False)     # 4D scalar, not 3D with 4 components
    image.CopyInformation(ref)
    p = Path(path)
    _check_suffix(p)
    return _save(image, p)
