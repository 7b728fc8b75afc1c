"""Reading and writing image and label volumes with their geometry.

Array convention: arrays are in the file's voxel index order, the order nibabel and 3D Slicer's
IJK use: a 3D file gives ``H×W×T`` (``array[i, j, k]``), a 4D file ``H×W×Z×T``. SimpleITK is the
single reader/writer, so the geometry (spacing, origin, direction) written back is exactly the one
read, and label volumes overlay the image in Slicer.

Every check that can fail on user input raises :class:`cineprop.errors.InputError` with a
one-line message naming the file. Size limits are checked from the header, before any pixel is
read, so a hostile header cannot make us allocate gigabytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import SimpleITK as sitk

from cineprop.errors import InputError, where
from cineprop.io.atomic import atomic_path

#: Largest accepted in-plane side (pixels). Echo and endoscopy frames are at most ~1000 px wide.
MAX_SIDE = 4096
#: Largest accepted number of frames (or slice positions × frames for 4D).
MAX_FRAMES = 20000
#: Largest accepted number of voxels in one file (about 1 GiB as float32).
MAX_VOXELS = 256 * 1024 * 1024
#: Largest label value: label volumes are written as uint8.
MAX_LABEL = 255

#: File name endings SimpleITK reads and writes that we accept for volumes.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a volume: spacing, origin and a row-major direction matrix.

    Lengths follow the volume's dimension (3 or 4); spacing is in mm (and, for a time axis,
    whatever the file says).
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dimension(self) -> int:
        return len(self.spacing)

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        return cls(
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def apply(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def identity(cls, dimension: int) -> "Geometry":
        eye = tuple(float(v) for v in np.eye(dimension).ravel())
        return cls((1.0,) * dimension, (0.0,) * dimension, eye)


@dataclass
class Volume:
    """An image or label volume as read from disk.

    Attributes:
        array: ``H×W×T`` (3D) or ``H×W×Z×T`` (4D), float32 for images, uint8 for labels.
        geometry: the file's geometry, reused verbatim when results are written.
        path: the file it came from (``None`` for arrays built in memory).
    """

    array: np.ndarray
    geometry: Geometry
    path: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(where(p, "file not found"))
    if p.is_dir():
        raise InputError(where(p, "is a folder, not an image file"))
    if not any(p.name.lower().endswith(s) for s in VOLUME_SUFFIXES):
        raise InputError(
            where(p, f"unsupported file type (expected one of {', '.join(VOLUME_SUFFIXES)}; "
                     "use 'cineprop convert' for DICOM, video and frame folders)")
        )
    return p


def check_size(shape: Sequence[int], path: object = None) -> None:
    """Refuse shapes over the documented limits (:data:`MAX_SIDE`, :data:`MAX_FRAMES`, :data:`MAX_VOXELS`)."""
    if len(shape) not in (3, 4):
        raise InputError(where(path, f"expected a 3D (H×W×T) or 4D (H×W×Z×T) volume, got {len(shape)}D {tuple(shape)}"))
    if min(shape) < 1:
        raise InputError(where(path, f"empty volume of shape {tuple(shape)}"))
    if max(shape[:2]) > MAX_SIDE:
        raise InputError(where(path, f"frames of {shape[0]}×{shape[1]} exceed the limit of {MAX_SIDE} px per side"))
    frames = int(np.prod(shape[2:]))
    if frames > MAX_FRAMES:
        raise InputError(where(path, f"{frames} frames exceed the limit of {MAX_FRAMES}"))
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise InputError(where(path, f"{int(np.prod(shape, dtype=np.int64))} voxels exceed the limit of {MAX_VOXELS}"))


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's log lines (nibabel reports header fixes on stderr) while reading one file."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_geometry(geometry: Geometry, path: object = None) -> None:
    """Refuse geometry that cannot be written back: spacing must be positive, everything finite, and
    the direction matrix invertible (a label written with it must overlay the image)."""
    spacing, origin = np.asarray(geometry.spacing, float), np.asarray(geometry.origin, float)
    direction = np.asarray(geometry.direction, float)
    if not (np.isfinite(spacing).all() and np.isfinite(origin).all() and np.isfinite(direction).all()):
        raise InputError(where(path, "header geometry has non-finite spacing, origin or direction"))
    if spacing.min() <= 1e-12:
        raise InputError(where(path, f"voxel spacing must be positive, got {tuple(float(v) for v in spacing)}"))
    dim = len(spacing)
    if direction.size != dim * dim or abs(np.linalg.det(direction.reshape(dim, dim))) < 1e-6:
        raise InputError(where(path, "header direction matrix is degenerate"))


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def _check_nifti_header(p: Path) -> None:
    """Refuse what SimpleITK would silently reinterpret: a 4D NIfTI of one frame (read as a 3D cine
    whose slices look like frames) and, without a qform/sform, a zero or non-finite voxel size
    (read as 1 mm)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with _quiet("nibabel"), ImageOpener(str(p)) as f:
            header = nib.Nifti1Header.from_fileobj(f, check=False)  # as written: nibabel's fixes would hide it
    except Exception:  # noqa: BLE001 - unreadable or NIfTI-2: SimpleITK's reader decides
        return
    shape, zooms = header.get_data_shape(), np.asarray(header["pixdim"][1:4], float)
    if len(shape) == 4 and shape[3] == 1:
        raise InputError(where(p, f"4D volume {shape} with a single frame: one time point is not a cine"))
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0 and \
            not (np.isfinite(zooms[:min(len(shape), 3)]).all() and (zooms[:min(len(shape), 3)] > 0).all()):
        raise InputError(where(p, f"voxel spacing in the header is {tuple(float(z) for z in zooms)} and there is no "
                                  "qform/sform to take it from"))


@dataclass(frozen=True)
class VolumeHeader:
    """What a volume file's header says: ``size`` in index order (``H×W×T`` or ``H×W×Z×T``, as the
    arrays), the geometry and the number of components per voxel (1 grey, 3–4 colour)."""

    size: tuple[int, ...]
    geometry: Geometry
    components: int


def read_volume_header(path: str | os.PathLike) -> VolumeHeader:
    """The header of a NIfTI/NRRD/MetaImage file, without reading its pixels (nor checking limits).

    Raises:
        InputError: not a readable image.
    """
    return _open(Path(path))[1]


def _open(p: Path) -> tuple[sitk.ImageFileReader, VolumeHeader]:
    """The one header reader: a SimpleITK reader that has read ``p``'s header, and that header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(where(p, "not a readable image (corrupt or not a NIfTI/NRRD/MetaImage file)")) from None
    geometry = Geometry(tuple(reader.GetSpacing()), tuple(reader.GetOrigin()), tuple(reader.GetDirection()))
    return reader, VolumeHeader(tuple(int(s) for s in reader.GetSize()), geometry,
                                int(reader.GetNumberOfComponents()))


def _read(p: Path) -> tuple[np.ndarray, Geometry, int]:
    """Read header (limits checked first), then pixels. Returns index-order array, geometry, components.

    NIfTI pixels are read with nibabel: SimpleITK's NIfTI reader turns NaN into 0 and accepts some
    truncated files silently, and both are errors we must report. Geometry always comes from
    SimpleITK, which is also what writes it back.
    """
    if _is_nifti(p):
        _check_nifti_header(p)
    reader, head = _open(p)
    size, geometry, components = head.size, head.geometry, head.components
    check_size(size, p)
    check_geometry(geometry, p)
    if not 1 <= components <= 4:
        raise InputError(where(p, f"{components} components per voxel; expected grey or colour (1 to 4)"))
    try:
        if _is_nifti(p) and components == 1:
            import nibabel as nib

            with _quiet("nibabel"):
                array = np.asanyarray(nib.load(str(p)).dataobj)
            if array.ndim > len(size):  # trailing singleton axes nibabel keeps
                array = array.reshape(size)
        else:
            image = reader.Execute()
            array = sitk.GetArrayFromImage(image)
            if components > 1:
                array = array.astype(np.float32).mean(axis=-1)  # colour/vector → grey
            array = array.transpose(tuple(range(array.ndim))[::-1])
    except MemoryError:
        raise  # not a bad file: the reader ran out of memory (cineprop.io.limited reports that)
    except Exception as exc:  # nibabel/SimpleITK on hostile bytes raise many types; all mean "bad file"
        raise InputError(where(p, f"image data is truncated or corrupt ({type(exc).__name__})")) from None
    if tuple(array.shape) != size:
        raise InputError(where(p, f"header says {size} but the data has shape {tuple(array.shape)}"))
    return np.ascontiguousarray(array), geometry, components


def read_image(path: str | os.PathLike) -> Volume:
    """Read an image volume (3D H×W×T or 4D H×W×Z×T) as float32.

    Raises:
        InputError: missing/unreadable file, wrong dimension, over the size limits, NaN or inf.
    """
    p = _check_path(path)
    array, geometry, _ = _read(p)
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: refused below
        array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise InputError(where(p, "image contains NaN or infinite intensities"))
    return Volume(array, geometry, str(p))


def read_label(path: str | os.PathLike, like: Volume | None = None) -> Volume:
    """Read a label volume (0 background, 1..255 structures) as uint8.

    Args:
        like: the image the label belongs to; its shape must match.

    Raises:
        InputError: unreadable, shape different from ``like``, non-integer or out-of-range values.
    """
    p = _check_path(path)
    array, geometry, components = _read(p)
    if components > 1:
        raise InputError(where(p, "label volume has several components per voxel; expected one integer label"))
    return Volume(as_label_array(array, p, like.shape if like is not None else None), geometry, str(p))


def as_label_array(array: np.ndarray, path: object = None, shape: Sequence[int] | None = None) -> np.ndarray:
    """Validate an integer label array and return it as uint8 (the checks of :func:`read_label`)."""
    array = np.asarray(array)
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise InputError(where(path, f"label shape {tuple(array.shape)} differs from image shape {tuple(shape)}"))
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise InputError(where(path, f"label volume has unsupported type {array.dtype}"))
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError(where(path, "label volume contains NaN or infinite values"))
        if not np.all(array == np.round(array)):
            raise InputError(where(path, "label volume has non-integer values; expected 0 (background) and 1..255"))
    if array.size and (array.min() < 0 or array.max() > MAX_LABEL):
        raise InputError(
            where(path, f"label values must be in 0..{MAX_LABEL}, found {array.min():g}..{array.max():g}")
        )
    return array.astype(np.uint8)


def write_label(path: str | os.PathLike, array: np.ndarray, reference: Volume) -> Path:
    """Write a label array as uint8 with exactly ``reference``'s geometry, atomically.

    Args:
        array: same shape as ``reference.array``, integer labels 0..255.
    """
    labels = as_label_array(array, path, reference.shape)
    return _write(path, labels, reference.geometry)


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: Geometry) -> Path:
    """Write a float32 image volume (index-order array) with ``geometry``, atomically."""
    array = np.asarray(array, dtype=np.float32)
    check_size(array.shape, path)
    if len(geometry.spacing) != array.ndim:
        raise InputError(where(path, f"geometry is {len(geometry.spacing)}D but the array is {array.ndim}D"))
    return _write(path, array, geometry)


def _write(path: str | os.PathLike, array: np.ndarray, geometry: Geometry) -> Path:
    p = Path(path)
    if not any(p.name.lower().endswith(s) for s in VOLUME_SUFFIXES):
        raise InputError(where(p, f"output must end with one of {', '.join(VOLUME_SUFFIXES)}"))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1])),
                                   isVector=False)
    geometry.apply(image)
    with atomic_path(p) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return p
