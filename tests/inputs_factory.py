"""Small clinical-format files written by the tests themselves: DICOM (pydicom), mp4/avi (ffmpeg), PNG folders.

Every writer returns the pixel data it stored as ``T×rows×cols`` (or ``Z×T×rows×cols``) arrays so the
tests can compare what the readers give back. Files are tiny (tens of kB) and explicit VR little endian.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"


def _dataset(path: Path, sop_class: str, syntax: str = ExplicitVRLittleEndian) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = "Test^Cine", "CINE001"
    ds.StudyInstanceUID = generate_uid()
    return ds


def multiframe_frames(t: int = 6, rows: int = 20, cols: int = 24, seed: int = 0) -> np.ndarray:
    """``T×rows×cols`` uint8 frames with a bright square moving right: frame order is visible."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(10, 60, size=(t, rows, cols)).astype(np.uint8)
    for k in range(t):
        frames[k, 5:11, 2 + 2 * k: 8 + 2 * k] = 200 + k
    return frames


def write_multiframe(path: Path, frames: np.ndarray, colour: str | None = None, spacing: str = "regions",
                     frame_time: float | None = 40.0, syntax: str = ExplicitVRLittleEndian,
                     pixel_bytes: bytes | None = None, **header) -> Path:
    """An ultrasound (or XA) multi-frame object.

    Args:
        frames: ``T×rows×cols`` uint8 grey; stored as grey, or as colour with ``colour`` "RGB" or
            "YBR_FULL" (R=G=B=grey, i.e. Y=grey, Cb=Cr=128, so the grey is exactly recoverable).
        spacing: "regions" (SequenceOfUltrasoundRegions, 0.03 × 0.02 cm), "pixel" (PixelSpacing
            0.4\\0.5), "imager" (ImagerPixelSpacing 0.3\\0.25) or "none".
        header: extra attributes that override the computed ones (Rows=..., NumberOfFrames=...).
    """
    t, rows, cols = frames.shape
    ds = _dataset(path, XA_IMAGE if spacing == "imager" else US_MULTIFRAME, syntax)
    ds.Modality = "XA" if spacing == "imager" else "US"
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, t
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if colour is None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        data = frames
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, colour, 0
        if colour == "RGB":
            data = np.repeat(frames[..., None], 3, axis=-1)
        else:
            data = np.stack([frames, np.full_like(frames, 128), np.full_like(frames, 128)], axis=-1)
    if frame_time is not None:
        ds.FrameTime = frame_time
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    if spacing == "regions":
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = cols - 1, rows - 1
        region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3  # cm
        region.PhysicalDeltaX, region.PhysicalDeltaY = 0.03, 0.02
        ds.SequenceOfUltrasoundRegions = [region]
    elif spacing == "pixel":
        ds.PixelSpacing = [0.4, 0.5]
    elif spacing == "imager":
        ds.ImagerPixelSpacing = [0.3, 0.25]
    for key, value in header.items():
        setattr(ds, key, value)
    ds.PixelData = pixel_bytes if pixel_bytes is not None else np.ascontiguousarray(data).tobytes()
    ds.save_as(str(path), write_like_original=False)
    return path


def mr_series_frames(z: int = 3, t: int = 5, rows: int = 18, cols: int = 22, seed: int = 1) -> np.ndarray:
    """``Z×T×rows×cols`` uint16 MR magnitudes; slice ``z``, frame ``t`` carries ``100 z + 10 t`` at [0, 0]."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 1000, size=(z, t, rows, cols)).astype(np.uint16)
    for a in range(z):
        for b in range(t):
            frames[a, b, 0, 0] = 100 * a + 10 * b
    return frames


#: An oblique short-axis-like orientation: row and column direction cosines (orthonormal).
OBLIQUE = (0.8, 0.6, 0.0, -0.36, 0.48, 0.8)


def write_mr_series(folder: Path, frames: np.ndarray, orientation=OBLIQUE, origin=(-30.0, 12.5, 40.0),
                    pixel_spacing=(1.25, 1.5), slice_gap: float = 8.0, trigger_step: float = 33.5,
                    shuffle_seed: int | None = 7, rescale: tuple[float, float] | None = None,
                    names: str = "IM{:04d}") -> tuple[list[Path], np.ndarray]:
    """One MR cine series, one file per (slice position, frame), files named in shuffled order.

    Slice ``z`` lies at ``origin + z * slice_gap * normal``; frame ``t`` has TriggerTime
    ``t * trigger_step``. InstanceNumbers run frame-major (all positions of frame 0 first), as
    scanners do for a multi-slice cine. Returns the files and the stored ``Z×T×rows×cols`` array.
    """
    folder.mkdir(parents=True, exist_ok=True)
    nz, nt, rows, cols = frames.shape
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    series, frame_of_reference, study = generate_uid(), generate_uid(), generate_uid()
    order = list(range(nz * nt))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    paths = []
    for n, index in enumerate(order):
        t, z = divmod(index, nz)
        path = folder / names.format(n)
        ds = _dataset(path, MR_IMAGE)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_gap
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        position = np.array(origin) + z * slice_gap * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.SliceLocation = f"{z * slice_gap:.6f}"
        ds.TriggerTime = f"{t * trigger_step:.3f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
        ds.PixelData = np.ascontiguousarray(frames[z, t]).astype("<u2").tobytes()
        ds.save_as(str(path), write_like_original=False)
        paths.append(path)
    return paths, frames


def write_video(path: Path, frames: np.ndarray, fps: float = 10.0, codec: str | None = None) -> Path:
    """Encode ``T×rows×cols`` uint8 grey frames (sides multiples of 16) with the bundled ffmpeg."""
    import imageio_ffmpeg

    t, rows, cols = frames.shape
    kwargs = {"codec": codec} if codec else {}
    writer = imageio_ffmpeg.write_frames(str(path), (cols, rows), fps=fps, pix_fmt_in="gray", quality=10,
                                         macro_block_size=16, ffmpeg_log_level="error", **kwargs)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def write_png_folder(folder: Path, frames: np.ndarray, names: list[str], mode: str = "L") -> Path:
    """Write ``T×rows×cols`` uint8 frames as PNGs with the given names (in frame order)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames):
        image = Image.fromarray(frame, mode="L")
        if mode != "L":
            image = image.convert(mode)
        image.save(folder / name)
    return folder


def ultrasound_clip(t: int = 8, rows: int = 96, cols: int = 128, seed: int = 2) -> tuple[np.ndarray, tuple]:
    """A synthetic echo clip: a fan-shaped sector of changing speckle with a moving bright disc, a grey
    border, static burned-in text and a depth scale, and a changing frame counter in a corner.

    Returns:
        ``T×rows×cols`` uint8 frames and the sector's bounding box ``(y0, y1, x0, x1)`` (half-open).
    """
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    apex_y, apex_x, radius = 14, cols // 2, rows - 22
    angle = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    distance = np.hypot(yy - apex_y, xx - apex_x)
    sector = (distance <= radius) & (distance >= 6) & (np.abs(angle) <= 35)
    ys, xs = np.nonzero(sector)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    frames = np.full((t, rows, cols), 18, dtype=np.uint8)
    for k in range(t):
        frame = frames[k]
        speckle = rng.gamma(2.0, 30.0, size=(rows, cols))
        cy, cx = apex_y + 30 + 2 * k, apex_x - 6 + 2 * k
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        frame[sector] = np.clip(speckle[sector] + 120 * disc[sector], 0, 255).astype(np.uint8)
        cv2.putText(frame, "CP 3.5MHz", (2, 9), cv2.FONT_HERSHEY_PLAIN, 0.6, 255, 1)  # static text
        for tick in range(apex_y, apex_y + radius, 10):  # static depth scale on the right
            frame[tick, cols - 8: cols - 3] = 230
        cv2.putText(frame, f"{k:02d}", (cols - 16, rows - 3), cv2.FONT_HERSHEY_PLAIN, 0.6, 255, 1)  # counter
    return frames, box


def write_enhanced_mr(path: Path, frames: np.ndarray, orientation=OBLIQUE, origin=(-30.0, 12.5, 40.0),
                      pixel_spacing=(1.25, 1.5), slice_gap: float = 8.0, trigger_step: float = 33.5) -> Path:
    """The series of :func:`write_mr_series` as one enhanced MR multi-frame object (per-frame functional groups).

    Frames are stored slice-major in reversed time order, so a reader must use the per-frame
    positions and trigger times to put them in place.
    """
    nz, nt, rows, cols = frames.shape
    normal = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
    ds = _dataset(path, "1.2.840.10008.5.1.4.1.1.4.1")
    ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "MR", generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, nz * nt
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared, measures, plane = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = list(pixel_spacing), slice_gap
    plane.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame, data = [], []
    for z in range(nz):
        for t in reversed(range(nt)):
            item, position, sync, content = Dataset(), Dataset(), Dataset(), Dataset()
            position.ImagePositionPatient = [f"{v:.6f}" for v in np.array(origin) + z * slice_gap * normal]
            sync.NominalCardiacTriggerDelayTime = t * trigger_step
            content.TemporalPositionIndex, content.InStackPositionNumber = t + 1, z + 1
            item.PlanePositionSequence, item.CardiacSynchronizationSequence = [position], [sync]
            item.FrameContentSequence = [content]
            per_frame.append(item)
            data.append(frames[z, t])
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.ascontiguousarray(np.stack(data)).astype("<u2").tobytes()
    ds.save_as(str(path), write_like_original=False)
    return path


def write_raw_nifti(path: Path, shape: tuple[int, ...] = (32, 32, 6), **fields) -> Path:
    """A gzipped NIfTI-1 written byte by byte (nibabel would fix what the tests want broken).

    ``fields`` set header fields (``scl_slope``, ``qform_code``, ...); ``pixdim`` sets the three
    voxel sizes and ``srow`` every value of the three sform rows. Data: float32 in [0, 100).
    """
    import gzip

    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    for key, value in fields.items():
        if key == "pixdim":
            header["pixdim"][1:4] = value
        elif key == "srow":
            for row in ("srow_x", "srow_y", "srow_z"):
                header[row][:] = value
        else:
            header[key] = value
    data = (np.random.default_rng(0).random(shape) * 100).astype(np.float32)
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    return Path(path)
