"""DICOM headers and pixel decoding for :mod:`cineprop.io.dicom`, hardened against hostile files.

pydicom parses untrusted bytes and can fail in many ways (truncated elements, bad value
representations, impossible lengths); every failure while reading a file here becomes an
:class:`~cineprop.errors.InputError` naming the file. Headers are read with large elements (the pixel data)
deferred, i.e. skipped, so the size limits are checked before any pixel is decoded.

Pixel values become float32 grey: the modality rescale (slope/intercept) is applied to grey
images; colour becomes grey as the luma Y (the Y channel of YBR images, BT.601 weights of RGB and
of PALETTE COLOR); MONOCHROME1 is inverted (``min + max − value``) so that bright means high signal.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.frames import to_grey
from cineprop.io.suffixes import DICOM_SUFFIXES    # endings treated as DICOM even without "DICM" at byte 128
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file (``DICM`` at byte 128) or a file with a DICOM suffix."""
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


@dataclass
class Header:
    """What cineprop needs of one DICOM file, as plain values (read once, no pixels).

    ``spacing`` is ``(row spacing, column spacing)`` in mm, in the order of DICOM PixelSpacing.
    ``per_frame`` holds ``(position, trigger time, temporal index)`` for each frame of an enhanced
    multi-frame object, empty otherwise.
    """

    path: Path
    rows: int
    cols: int
    frames: int
    samples: int
    has_pixels: bool
    transfer_syntax: str
    series_uid: str = ""
    sop_uid: str = ""
    modality: str = ""
    spacing: tuple[float, float] | None = None
    spacing_source: str = "none"
    orientation: tuple[float, ...] | None = None
    position: tuple[float, float, float] | None = None
    slice_location: float | None = None
    trigger_time: float | None = None
    instance: int = 0
    frame_time: float | None = None
    per_frame: list[tuple] = field(default_factory=list)

    @functools.cached_property
    def syntax(self):
        """``transfer_syntax`` parsed once, as a pydicom ``UID``; ``None`` without file meta (pydicom
        then assumes an uncompressed syntax)."""
        from pydicom.uid import UID

        if not self.transfer_syntax:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return UID(self.transfer_syntax)


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a (multi-valued) element, or ``None`` when absent or malformed."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return values


def _first(seq_owner, *path: str):
    """Follow ``Seq[0].Seq[0]....Keyword`` through nested sequences; ``None`` if any step is missing."""
    node = seq_owner
    for keyword in path[:-1]:
        seq = getattr(node, keyword, None)
        if not seq:
            return None
        node = seq[0]
    return getattr(node, path[-1], None)


def _spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """In-plane spacing (row, column) in mm and where it came from (first valid source wins)."""
    candidates = [
        (getattr(ds, "PixelSpacing", None), 1.0, "PixelSpacing"),
        (_first(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "PixelSpacing"), 1.0, "PixelSpacing"),
        (_first(ds, "PerFrameFunctionalGroupsSequence", "PixelMeasuresSequence", "PixelSpacing"), 1.0,
         "PixelSpacing"),
    ]
    regions = [r for r in getattr(ds, "SequenceOfUltrasoundRegions", None) or []
               if getattr(r, "PhysicalUnitsXDirection", None) == 3 and getattr(r, "PhysicalUnitsYDirection", None) == 3]
    if regions:  # the largest region measured in cm; DICOM gives PhysicalDelta in cm per pixel
        def area(r):
            try:
                return (int(r.RegionLocationMaxX1) - int(r.RegionLocationMinX0)) * \
                       (int(r.RegionLocationMaxY1) - int(r.RegionLocationMinY0))
            except (AttributeError, TypeError, ValueError):
                return 0
        best = max(regions, key=area)
        delta = (getattr(best, "PhysicalDeltaY", None), getattr(best, "PhysicalDeltaX", None))
        candidates.append((None if None in delta else list(delta), 10.0, "SequenceOfUltrasoundRegions"))
    candidates.append((getattr(ds, "ImagerPixelSpacing", None), 1.0, "ImagerPixelSpacing"))
    for value, scale, source in candidates:
        pair = _floats(value, 2)
        if pair and min(pair) > 0:
            return (pair[0] * scale, pair[1] * scale), source
    return None, "none"


def _frame_time(ds) -> float | None:
    """Time between frames in ms: FrameTime, FrameTimeVector, CineRate or RecommendedDisplayFrameRate."""
    for keyword, rate in (("FrameTime", False), ("CineRate", True), ("RecommendedDisplayFrameRate", True)):
        value = _floats(getattr(ds, keyword, None), 1)
        if value and value[0] > 0:
            return 1000.0 / value[0] if rate else value[0]
    vector = getattr(ds, "FrameTimeVector", None)
    if vector is not None and hasattr(vector, "__len__") and len(vector) > 1:
        values = _floats(list(vector)[1:], len(vector) - 1)
        if values and np.mean(values) > 0:
            return float(np.mean(values))
    return None


def _per_frame(ds, frames: int) -> list[tuple]:
    """``(position, trigger time, temporal index)`` per frame of an enhanced multi-frame object."""
    items = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if not items or len(items) != frames:
        return []
    out = []
    for item in items:
        position = _floats(_first(item, "PlanePositionSequence", "ImagePositionPatient"), 3)
        trigger = _floats(_first(item, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"), 1)
        temporal = _floats(_first(item, "FrameContentSequence", "TemporalPositionIndex"), 1)
        out.append((position, trigger[0] if trigger else None, temporal[0] if temporal else 0.0))
    return out


def _orientation(ds, path: Path) -> tuple[float, ...] | None:
    value = _floats(getattr(ds, "ImageOrientationPatient", None), 6)
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        value = value or _floats(_first(ds, seq, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    if value is None:
        return None
    row, col = np.array(value[:3]), np.array(value[3:])
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(where(path, "ImageOrientationPatient is not two orthogonal unit vectors"))
    return tuple(float(v) for v in np.concatenate([row / np.linalg.norm(row), col / np.linalg.norm(col)]))


def _dataset(path: Path, pixels: bool):
    import pydicom

    force = path.name.lower().endswith(DICOM_SUFFIXES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # headers: large values (the pixel data above all) are deferred, i.e. skipped, not read
            return pydicom.dcmread(str(path), force=force, defer_size=None if pixels else "64 KB")
        except Exception as exc:  # pydicom raises many types on malformed bytes; all mean "bad file"
            raise InputError(where(path, f"not a readable DICOM file ({type(exc).__name__})")) from None


def read_header(path: Path) -> Header:
    """Read one file's header (no pixel data). Raises InputError for anything malformed."""
    ds = _dataset(path, pixels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            meta = getattr(ds, "file_meta", None)
            syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
            header = Header(
                path=path, rows=rows, cols=cols, frames=frames,
                samples=int(getattr(ds, "SamplesPerPixel", 1) or 1),
                has_pixels=any(k in ds for k in _PIXEL_KEYWORDS),
                transfer_syntax=syntax,
                series_uid="".join(c for c in str(getattr(ds, "SeriesInstanceUID", "") or "") if c.isprintable()),
                sop_uid=str(getattr(ds, "SOPInstanceUID", "") or ""),
                modality="".join(c for c in str(getattr(ds, "Modality", "") or "") if c.isalnum())[:16],
                orientation=_orientation(ds, path),
                position=_floats(getattr(ds, "ImagePositionPatient", None), 3),
                frame_time=_frame_time(ds),
            )
            header.spacing, header.spacing_source = _spacing(ds)
            location = _floats(getattr(ds, "SliceLocation", None), 1)
            header.slice_location = location[0] if location else None
            instance = _floats(getattr(ds, "InstanceNumber", None), 1)
            header.instance = int(instance[0]) if instance else 0
            trigger = _floats(getattr(ds, "TriggerTime", None), 1)
            header.trigger_time = trigger[0] if trigger else None
            if frames > 1:
                header.per_frame = _per_frame(ds, frames)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(where(path, f"unreadable DICOM header ({type(exc).__name__})")) from None
    return header


def check_decodable(header: Header) -> None:
    """Refuse pixel data in a transfer syntax no installed pixel handler decodes, before decoding."""
    import pydicom.config

    syntax = header.syntax
    if syntax is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        known = syntax.is_valid and not syntax.is_private and syntax.type == "Transfer Syntax"
    if not known:
        raise InputError(where(header.path, f"unknown transfer syntax {header.transfer_syntax!r}"))
    handlers = [h for h in pydicom.config.pixel_data_handlers if h.supports_transfer_syntax(syntax)]
    if not any(h.is_available() for h in handlers):
        raise InputError(where(header.path, f"pixel data is compressed as {syntax.name} ({header.transfer_syntax}), "
                                            "which no installed decoder reads; export it uncompressed "
                                            "(e.g. gdcmconv --raw or dcmdjpeg) and try again"))


def _check_one_bit_header(ds, header: Header) -> None:
    """Refuse ``BitsAllocated = 1`` over uncompressed pixel data holding a byte (or more) per pixel.

    Such a header (seen in hand-edited or badly converted files) makes pydicom unpack every byte
    into 8 "pixels": the frames decode as stripes of noise instead of failing. Real 1-bit data
    holds one eighth of a byte per pixel.
    """
    compressed = header.syntax is not None and header.syntax.is_compressed
    if int(getattr(ds, "BitsAllocated", 0) or 0) != 1 or "PixelData" not in ds or compressed:
        return
    pixels = int(ds.Rows) * int(ds.Columns) * max(1, header.frames) * max(1, header.samples)
    if len(ds.PixelData) >= pixels:
        raise InputError(where(header.path, f"BitsAllocated is 1, but the pixel data holds {len(ds.PixelData)} "
                                            f"bytes for {pixels} pixels (8 bits each): the header is wrong; "
                                            "correct BitsAllocated/BitsStored and try again"))


def decode_frames(header: Header) -> np.ndarray:
    """Decode a file's pixel data to ``frames×rows×cols`` float32 grey (see the module docstring)."""
    check_decodable(header)
    path = header.path
    ds = _dataset(path, pixels=True)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InputError(where(path, "DICOM file has no pixel data (not an image, or cut short)"))
    _check_one_bit_header(ds, header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = np.asarray(ds.pixel_array)
            photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
            if photometric == "PALETTE COLOR":
                from pydicom.pixel_data_handlers.util import apply_color_lut

                arr = apply_color_lut(arr, ds)
            slope = _floats(getattr(ds, "RescaleSlope", None), 1) or _floats(
                _first(ds, "SharedFunctionalGroupsSequence", "PixelValueTransformationSequence", "RescaleSlope"), 1)
            intercept = _floats(getattr(ds, "RescaleIntercept", None), 1) or _floats(
                _first(ds, "SharedFunctionalGroupsSequence", "PixelValueTransformationSequence", "RescaleIntercept"), 1)
        except InputError:
            raise
        except Exception as exc:  # pydicom/numpy on malformed pixel data
            raise InputError(where(path, f"pixel data is truncated or corrupt ({type(exc).__name__})")) from None
    colour = photometric == "PALETTE COLOR" or header.samples > 1
    expected = (header.frames, header.rows, header.cols) + ((arr.shape[-1],) if colour else ())
    if header.frames == 1:
        arr = arr[np.newaxis]
    if arr.shape != expected or (colour and arr.shape[-1] not in (3, 4)):
        raise InputError(where(path, f"pixel data has shape {arr.shape}, the header says {expected}"))
    if colour and photometric.startswith("YBR"):
        grey = arr[..., 0].astype(np.float32)  # Y is the luma
    else:
        grey = to_grey(arr, colour_axis=colour)
        if not colour and (slope or intercept):
            grey = grey * np.float32(slope[0] if slope else 1.0) + np.float32(intercept[0] if intercept else 0.0)
    if not np.isfinite(grey).all():
        raise InputError(where(path, "pixel data contains NaN or infinite values"))
    if photometric == "MONOCHROME1":
        grey = grey.min() + grey.max() - grey
    return grey.astype(np.float32, copy=False)
