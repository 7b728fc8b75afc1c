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

from CinePropLib.conversions import ConversionError, as_labels, grid_from_lps, grid_to_lps, ijk_to_kji

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
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError:
        raise ConversionError(f"{p.name}: not a readable image file") from None
    if image.GetDimension() != 3:
        raise ConversionError(f"{p.name}: expected a 3D volume (I×J×T), got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(f"{p.name}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()}")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    return np.ascontiguousarray(array), grid_from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
