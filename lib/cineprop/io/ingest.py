"""One entry point for every accepted input: volumes, DICOM, video files and frame folders.

:func:`ingest` recognises the input, reads it with the matching reader and optionally crops it;
:func:`read_any` returns just the volume (what :func:`cineprop.io.load_cines` uses), and
:func:`convert` writes it as NIfTI/NRRD (what ``cineprop convert`` and the server use).

=================================  ==============================================================
input                              reader
=================================  ==============================================================
``.nii.gz .nii .nrrd .nhdr .mha``  :func:`cineprop.io.volume.read_image` (geometry kept as is)
``.dcm`` or any DICOM Part 10 file :func:`cineprop.io.dicom.read_dicom` (multi-frame object)
folder of DICOM files              :func:`cineprop.io.dicom.read_dicom` (one series)
``.mp4 .avi .mov .mkv ...``        :func:`cineprop.io.video.read_video`
folder of ``.png .jpg ...``        :func:`cineprop.io.frames.read_frame_folder` (natural order)
``.zip`` of either folder          :func:`cineprop.io.archive.extracted`, then as the folder
=================================  ==============================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.archive import ARCHIVE_SUFFIXES
from cineprop.io.cine import Cine, cines_from_volume, labels_for, slice_positions
from cineprop.io.crop import CropBox, crop_volume, parse_crop
from cineprop.io.volume import VOLUME_SUFFIXES, Geometry, Volume, read_image, read_label, write_image


@dataclass
class Ingested:
    """An input read as a volume.

    Attributes:
        volume: float32 ``i×j×T`` or ``i×j×Z×T`` with its geometry (see :mod:`cineprop.io.volume`).
        kind: ``"volume"``, ``"dicom"``, ``"video"`` or ``"frames"``.
        description: one line on what was read (frames, spacing source, frame rate).
        crop: the crop applied (``None`` when not cropped).
    """

    volume: Volume
    kind: str
    description: str
    crop: CropBox | None = None


def input_kind(path: str | os.PathLike) -> str:
    """Which reader an input needs: ``"volume"``, ``"dicom"``, ``"video"``, ``"frames"`` or ``"archive"``.

    Raises:
        InputError: missing path, empty folder, or a file type that is not accepted.
    """
    from cineprop.io.dicom_header import is_dicom_file
    from cineprop.io.frames import FRAME_SUFFIXES, frame_files
    from cineprop.io.video import VIDEO_SUFFIXES

    p = Path(path)
    if not p.exists():
        raise InputError(where(p, "file not found"))
    name = p.name.lower()
    if p.is_dir():
        if any(True for _ in _dicom_candidates(p)):
            return "dicom"  # DICOM wins: exports often carry preview images beside the series
        if frame_files(p):
            return "frames"
        raise InputError(where(p, "folder holds neither DICOM files nor frame images "
                                  f"({', '.join(FRAME_SUFFIXES)})"))
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if is_dicom_file(p):
        return "dicom"
    if name.endswith(FRAME_SUFFIXES):
        raise InputError(where(p, "a single image is not a cine; put its frames in a folder and give the folder"))
    raise InputError(where(p, "unsupported input; expected a NIfTI/NRRD/MetaImage volume, a DICOM file or "
                              "folder, a video file (mp4, avi, mov, mkv, ...) or a folder of frame images"))


def _dicom_candidates(folder: Path):
    from cineprop.io.dicom_header import is_dicom_file

    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.upper() != "DICOMDIR" and is_dicom_file(Path(root) / name):
                yield name


def ingest(path: str | os.PathLike, crop: str | tuple | None = None) -> Ingested:
    """Read any accepted input as a volume, optionally cropped.

    Args:
        crop: ``None``, ``"auto"``, ``"y0:y1,x0:x1"`` or a parsed box (see :mod:`cineprop.io.crop`).
    Raises:
        InputError: anything wrong with the input, in one line naming it.
    """
    kind = input_kind(path)
    if kind == "archive":
        return _ingest_archive(path, crop)
    parsed = parse_crop(crop, path) if isinstance(crop, str) or crop is None else crop
    if kind == "volume":
        volume = read_image(path)
        description = f"volume {'×'.join(map(str, volume.shape))}"
    elif kind == "dicom":
        from cineprop.io.dicom import read_dicom

        volume, description = read_dicom(path)
    elif kind == "video":
        from cineprop.io.video import read_video

        volume, description = read_video(path)
    else:
        from cineprop.io.frames import read_frame_folder

        volume, description = read_frame_folder(path)
    volume, box = crop_volume(volume, parsed, path)
    return Ingested(volume, kind, description, box)


def _ingest_archive(path: str | os.PathLike, crop: str | tuple | None) -> Ingested:
    """A ``.zip`` of a DICOM series or frame folder; messages name the archive, not the temporary folder."""
    from cineprop.io.archive import extracted

    with extracted(path) as folder:
        try:
            result = ingest(folder, crop)
        except InputError as exc:
            raise InputError(str(exc).replace(str(folder), str(path))) from None
        result.volume.path = str(path)
        result.description = f"{Path(path).name} (zip): " + result.description.replace(str(folder), Path(path).name)
    return result


def read_any(path: str | os.PathLike, crop: str | tuple | None = None) -> Volume:
    """The volume of any accepted input (see :func:`ingest`)."""
    return ingest(path, crop).volume


def convert(source: str | os.PathLike, output: str | os.PathLike, slice_index: int | None = None,
            crop: str | tuple | None = None) -> tuple[Ingested, Volume]:
    """Read ``source``, check it is a valid cine, and write it to ``output`` atomically.

    Args:
        slice_index: for a 4D input, write only this slice position, as a 3D ``i×j×T`` volume
            whose frame plane lies where that position is.
        crop: as for :func:`ingest`.
    Returns:
        what was read and the volume written.
    Raises:
        InputError: a bad input or output; nothing is written then.
    """
    out = Path(output)
    if not out.name.lower().endswith(VOLUME_SUFFIXES):
        raise InputError(where(out, f"output must end with one of {', '.join(VOLUME_SUFFIXES)}"))
    if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise InputError(where(out, "output is the input file; choose another output name"))
    result = ingest(source, crop)
    volume = select_slice(result.volume, slice_index)
    cines_from_volume(volume)  # the same checks every cine gets: ≥ 2 frames, ≥ 4 px, finite
    write_image(out, volume.array, volume.geometry)
    return result, Volume(volume.array, volume.geometry, str(out))


def select_slice(volume: Volume, slice_index: int | None) -> Volume:
    """Slice position ``slice_index`` of a 4D volume as a 3D volume in the same place (or the volume)."""
    if slice_index is None:
        return volume
    (z,) = slice_positions(volume, slice_index)
    if z is None:
        return volume
    g = volume.geometry
    direction4 = np.asarray(g.direction, dtype=float).reshape(4, 4)
    origin = np.asarray(g.origin[:3]) + direction4[:3, :3] @ np.array([0.0, 0.0, z * g.spacing[2]])
    geometry = Geometry((g.spacing[0], g.spacing[1], g.spacing[3]), tuple(float(v) for v in origin),
                        tuple(float(v) for v in direction4[:3, :3].ravel()))
    return Volume(np.ascontiguousarray(volume.array[:, :, z, :]), geometry, volume.path)


def load_cines(path: str | os.PathLike, slice_index: int | None = None) -> tuple[Volume, list[Cine]]:
    """Read any accepted input and split it into cines. Returns the volume (for geometry) and the cines.

    ``path`` is a volume file, a DICOM file or series folder, a video file or a folder of frames
    (see :func:`ingest`); results written with the volume's geometry overlay the file
    ``cineprop convert`` writes from the same input.
    """
    volume = read_any(path)
    return volume, cines_from_volume(volume, slice_index)


def load_labelled_cine(image_path: str | os.PathLike, label_path: str | os.PathLike,
                       slice_index: int | None = None) -> tuple[Volume, list[tuple[Cine, np.ndarray]]]:
    """Read an image and its label volume; return the volume and ``(cine, H×W×T labels)`` pairs."""
    volume, cines = load_cines(image_path, slice_index)
    labels = read_label(label_path, like=volume)
    return volume, [(cine, labels_for(labels, cine)) for cine in cines]
