"""Cines: 2D+t arrays with their in-plane spacing, cut out of 3D or 4D volumes.

A :class:`Cine` is what every propagation method consumes: ``frames`` is ``H×W×T`` float32 with
frames on the last axis. A 3D file is one cine; a 4D file ``H×W×Z×T`` holds one cine per slice
position ``z`` (choose one with ``slice_index`` or take them all). Results are put back into an
array of the file's shape with :func:`assemble_labels`, so they are written with the file's
geometry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.suffixes import INPUT_SUFFIXES
from cineprop.io.volume import Volume


@dataclass
class Cine:
    """One 2D+t sequence.

    Attributes:
        frames: ``H×W×T`` float32, finite, ``T ≥ 2``.
        spacing: in-plane pixel size in mm along ``H`` and ``W``.
        name: an identifier for reports (file stem, plus ``_zN`` for a 4D slice position).
        slice_index: the slice position ``z`` in a 4D volume, ``None`` for a 3D file.
    """

    frames: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    name: str = "cine"
    slice_index: int | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float32)
        if self.frames.ndim != 3:
            raise InputError(where(self.name, f"a cine must be H×W×T, got shape {self.frames.shape}"))
        if self.frames.shape[2] < 2:
            raise InputError(where(self.name, f"a cine needs at least 2 frames, got T={self.frames.shape[2]}"))
        if min(self.frames.shape[:2]) < 4:
            raise InputError(where(self.name, f"frames of {self.frames.shape[0]}×{self.frames.shape[1]} are too small"))
        if not np.isfinite(self.frames).all():
            raise InputError(where(self.name, "cine contains NaN or infinite intensities"))
        self.spacing = (float(self.spacing[0]), float(self.spacing[1]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape)  # type: ignore[return-value]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[2])


def stem(path: str | os.PathLike) -> str:
    """File name without its volume, DICOM or video suffix (``a/b/x.nii.gz`` → ``x``, ``clip.mp4`` → ``clip``)."""
    name = Path(path).name
    for suffix in INPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def slice_positions(volume: Volume, slice_index: int | None = None) -> list[int | None]:
    """The slice positions a volume is split into: ``[None]`` for 3D, ``[z]`` or all ``z`` for 4D."""
    if volume.array.ndim == 3:
        if slice_index not in (None, 0):
            raise InputError(where(volume.path, f"--slice {slice_index} given but the volume is 3D (H×W×T)"))
        return [None]
    depth = volume.array.shape[2]
    if slice_index is None:
        return list(range(depth))
    if not 0 <= slice_index < depth:
        raise InputError(where(volume.path, f"--slice {slice_index} is outside 0..{depth - 1}"))
    return [slice_index]


def _take(array: np.ndarray, z: int | None) -> np.ndarray:
    return array if z is None else array[:, :, z, :]


def cines_from_volume(volume: Volume, slice_index: int | None = None, name: str | None = None) -> list[Cine]:
    """Split an image volume into cines (one for 3D, one per chosen slice position for 4D)."""
    base = name or (stem(volume.path) if volume.path else "cine")
    spacing = (volume.geometry.spacing[0], volume.geometry.spacing[1])
    cines = []
    for z in slice_positions(volume, slice_index):
        label = base if z is None else f"{base}_z{z}"
        try:
            cines.append(Cine(_take(volume.array, z), spacing, label, z))
        except InputError as exc:
            raise InputError(where(volume.path, str(exc).split(": ", 1)[-1])) from None
    return cines


def labels_for(label_volume: Volume | np.ndarray, cine: Cine) -> np.ndarray:
    """The ``H×W×T`` uint8 label array of ``cine`` taken from a label volume of the file's shape."""
    array = label_volume.array if isinstance(label_volume, Volume) else np.asarray(label_volume)
    return _take(array, cine.slice_index)


def assemble_labels(reference: Volume, results: Iterable[tuple[Cine, np.ndarray]]) -> np.ndarray:
    """Put per-cine ``H×W×T`` label arrays back into one uint8 array of ``reference``'s shape.

    Slice positions without a result stay 0.
    """
    out = np.zeros(reference.shape, dtype=np.uint8)
    for cine, labels in results:
        target = _take(out, cine.slice_index)
        if labels.shape != target.shape:
            raise InputError(where(reference.path, f"result shape {labels.shape} differs from cine shape {target.shape}"))
        target[...] = labels
    return out
