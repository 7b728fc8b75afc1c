"""DICOM cines: multi-frame objects (ultrasound, XA, enhanced MR) and MR cine series, as volumes.

Accepted inputs:

* **one file** with ``NumberOfFrames > 1`` (ultrasound/XA multi-frame): frames in file order;
  an *enhanced* multi-frame object with per-frame positions is grouped like a series (below);
* **a folder** holding one series, one file per frame (MR cine): the files are grouped by slice
  position (ImagePositionPatient, else SliceLocation) and ordered in time by TriggerTime, then
  InstanceNumber. One position gives a 3D ``i×j×T`` volume, several a 4D ``i×j×Z×T`` volume
  (positions ordered along the slice normal). Files that are not DICOM or carry no pixel data
  (DICOMDIR, reports) are skipped; a folder with several series is refused with their list.

Geometry follows SimpleITK/ITK (LPS, the frame of DICOM's patient coordinates), so a written NIfTI
lies exactly where Slicer puts the DICOM: ``i`` runs along a row (ImageOrientationPatient[0:3],
spacing PixelSpacing[1]), ``j`` along a column (IOP[3:6], spacing PixelSpacing[0]), the third
direction is the slice normal ``row × column``, the origin is the first position's
ImagePositionPatient. For 4D the third axis is the slice position (spacing: the median distance
between positions along the normal) and the fourth is time. The time axis's spacing is the frame
interval in ms (FrameTime, frame rate, or the median TriggerTime step) and 1 when unknown. Without
ImageOrientationPatient (ultrasound) the direction is the identity and the origin 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.dicom_header import Header, decode_frames, is_dicom_file, read_header
from cineprop.io.frames import natural_key
from cineprop.io.volume import MAX_FRAMES, Geometry, Volume, check_size

#: Positions closer than this (mm) are the same slice position.
POSITION_TOLERANCE = 0.01


def dicom_files(folder: Path) -> list[Path]:
    """DICOM files under ``folder`` (recursively, hidden files skipped), naturally sorted by path.

    Raises:
        InputError: more files than :data:`~cineprop.io.volume.MAX_FRAMES` (before any is read).
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or name.upper() == "DICOMDIR" or not is_dicom_file(path):
                continue
            found.append(path)
            if len(found) > MAX_FRAMES:
                raise InputError(where(folder, f"more than {MAX_FRAMES} DICOM files; the frame limit is {MAX_FRAMES}"))
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(folder))))


def _only_series(headers: list[Header], folder: Path) -> list[Header]:
    """The headers of the folder's single image series (duplicated instances dropped)."""
    images = [h for h in headers if h.has_pixels]
    if not images:
        raise InputError(where(folder, "no DICOM image with pixel data found"))
    series: dict[str, list[Header]] = {}
    for h in images:
        series.setdefault(h.series_uid, []).append(h)
    if len(series) > 1:
        listing = "; ".join(f"{uid or '(no SeriesInstanceUID)'}: {len(hs)} files ({hs[0].modality or '?'})"
                            for uid, hs in sorted(series.items(), key=lambda kv: -len(kv[1])))
        raise InputError(where(folder, f"holds {len(series)} DICOM series; give one series per folder ({listing})"))
    seen, unique = set(), []
    for h in images:
        if h.sop_uid and h.sop_uid in seen:
            continue  # the same instance exported twice
        seen.add(h.sop_uid)
        unique.append(h)
    return unique


def _same_plane(headers: list[Header], where_: Path) -> Header:
    """Check that every file has the first one's size, spacing and orientation; return the first."""
    first = headers[0]
    for h in headers[1:]:
        if (h.rows, h.cols, h.samples) != (first.rows, first.cols, first.samples):
            raise InputError(where(where_, f"{h.path.name} is {h.cols}×{h.rows} px but {first.path.name} is "
                                           f"{first.cols}×{first.rows} px; not one cine series"))
        for name in ("spacing", "orientation"):
            a, b = getattr(first, name), getattr(h, name)
            if (a is None) != (b is None) or (a is not None and not np.allclose(a, b, atol=1e-4)):
                raise InputError(where(where_, f"{h.path.name} and {first.path.name} have different {name}; "
                                               "not one cine series"))
    return first


def _records(headers: list[Header]) -> list[dict]:
    """One record per frame: its file, frame index in the file, position, trigger time and order number."""
    records = []
    for h in headers:
        if h.per_frame:  # enhanced multi-frame: per-frame position and timing
            for k, (position, trigger, temporal) in enumerate(h.per_frame):
                records.append(dict(header=h, frame=k, position=position, location=None, trigger=trigger,
                                    number=(temporal, k)))
        else:
            for k in range(h.frames):
                records.append(dict(header=h, frame=k, position=h.position, location=h.slice_location,
                                    trigger=h.trigger_time if h.frames == 1 else None, number=(h.instance, k)))
    return records


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray:
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    return np.cross(np.array(orientation[:3]), np.array(orientation[3:]))


def _group(records: list[dict], normal: np.ndarray, folder: Path) -> tuple[list[list[dict]], list[float], str]:
    """Group frames by slice position, ordered along the normal; each group ordered in time.

    Returns:
        the groups, each group's distance along the normal (mm), and how positions were found.
    """
    if all(r["position"] is not None for r in records):
        distance = {id(r): float(np.dot(r["position"], normal)) for r in records}
        key = {id(r): tuple(np.round(np.asarray(r["position"]) / POSITION_TOLERANCE).astype(np.int64)) for r in records}
        how = "ImagePositionPatient"
    elif all(r["location"] is not None for r in records):
        distance = {id(r): float(r["location"]) for r in records}
        key = {id(r): round(r["location"] / POSITION_TOLERANCE) for r in records}
        how = "SliceLocation"
    else:
        distance = {id(r): 0.0 for r in records}
        key = {id(r): 0 for r in records}
        how = "one position"
    groups: dict = {}
    for r in records:
        groups.setdefault(key[id(r)], []).append(r)
    timed = all(r["trigger"] is not None for r in records)
    ordered = []
    for members in groups.values():
        members.sort(key=lambda r: ((r["trigger"] if timed else 0.0), r["number"],
                                    natural_key(r["header"].path.name)))
        if timed:
            times = [r["trigger"] for r in members]
            clash = next((i for i in range(1, len(times)) if times[i] == times[i - 1]), None)
            if clash is not None:
                a, b = members[clash - 1]["header"].path.name, members[clash]["header"].path.name
                raise InputError(where(folder, f"{a} and {b} have the same slice position and TriggerTime "
                                               f"{times[clash]:g}; the folder mixes series or image types"))
        ordered.append(members)
    ordered.sort(key=lambda g: distance[id(g[0])])
    counts = sorted({len(g) for g in ordered})
    if len(counts) > 1:
        raise InputError(where(folder, f"slice positions have different numbers of frames ({counts}); "
                                       "some files are missing or the folder mixes series"))
    return ordered, [distance[id(g[0])] for g in ordered], how


def _frame_interval(first: Header, groups: list[list[dict]]) -> tuple[float, str]:
    """The time axis's spacing in ms and its source (see the module docstring)."""
    if first.frame_time:
        return first.frame_time, "frame time"
    times = [r["trigger"] for r in groups[0]]
    if len(times) > 1 and all(t is not None for t in times):
        steps = np.diff(times)
        if np.median(steps) > 0:
            return float(np.median(steps)), "TriggerTime"
    return 1.0, "unknown"


def _geometry(first: Header, distances: list[float], groups: list[list[dict]], path: Path) -> tuple[Geometry, str]:
    row_spacing, col_spacing = first.spacing or (1.0, 1.0)
    if first.orientation is not None:
        row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    else:
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    normal = np.cross(row, col)
    position = groups[0][0]["position"]
    origin = list(position) if position is not None else [0.0, 0.0, 0.0]
    dt, dt_source = _frame_interval(first, groups)
    axes = np.stack([row, col, normal], axis=1)  # columns: directions of i, j and the third axis
    if len(groups) == 1:
        geometry = Geometry((col_spacing, row_spacing, dt), tuple(origin), tuple(axes.ravel()))
    else:
        steps = np.diff(distances)
        dz = float(np.median(steps))
        if dz <= 0:
            raise InputError(where(path, "slice positions do not advance along the slice normal"))
        direction = np.eye(4)
        direction[:3, :3] = axes
        geometry = Geometry((col_spacing, row_spacing, dz, dt), tuple(origin) + (0.0,), tuple(direction.ravel()))
    return geometry, f"frame interval {dt:g} ms ({dt_source})" if dt_source != "unknown" else "frame interval unknown"


def read_dicom(path: str | os.PathLike) -> tuple[Volume, str]:
    """Read a DICOM multi-frame file or a folder holding one cine series (see the module docstring).

    Returns:
        the float32 volume (``i×j×T`` or ``i×j×Z×T``) with its geometry, and a one-line description.
    Raises:
        InputError: unreadable/truncated files, no pixel data, an undecodable transfer syntax,
            several series, inconsistent files, over the size limits (checked before decoding).
    """
    path = Path(path)
    if path.is_dir():
        files = dicom_files(path)
        if not files:
            raise InputError(where(path, "no DICOM files in this folder"))
        headers = _only_series([read_header(f) for f in files], path)
    else:
        header = read_header(path)
        if not header.has_pixels:
            raise InputError(where(path, "DICOM file has no pixel data (not an image, or cut short)"))
        headers = [header]
    first = _same_plane(headers, path)
    if first.samples not in (1, 3, 4):
        raise InputError(where(path, f"SamplesPerPixel {first.samples} is not grey or colour"))
    check_size((first.cols, first.rows, sum(h.frames for h in headers)), path)
    groups, distances, how = _group(_records(headers), _normal(first.orientation), path)
    frames = len(groups[0])
    shape = (first.cols, first.rows, frames) if len(groups) == 1 else (first.cols, first.rows, len(groups), frames)
    check_size(shape, path)
    if frames < 2:
        raise InputError(where(path, f"not a cine: {frames} frame per slice position (a cine needs at least 2)"))
    geometry, timing = _geometry(first, distances, groups, path)
    out = np.empty(shape, dtype=np.float32)
    slot = {(id(r["header"]), r["frame"]): (z, t) for z, g in enumerate(groups) for t, r in enumerate(g)}
    for h in headers:
        for k, frame in enumerate(decode_frames(h)):  # one file at a time: memory is the volume plus one file
            z, t = slot[(id(h), k)]
            if len(groups) == 1:
                out[:, :, t] = frame.T  # rows×cols → i (along a row) × j (along a column)
            else:
                out[:, :, z, t] = frame.T
    kind = "multi-frame" if len(headers) == 1 and headers[0].frames > 1 else "series"
    layout = f"{frames} frames" if len(groups) == 1 else f"{len(groups)} slice positions × {frames} frames"
    description = (f"DICOM {first.modality or '?'} {kind} ({len(headers)} file{'s' * (len(headers) > 1)}): {layout}; "
                   f"spacing from {first.spacing_source}; {timing}")
    if len(groups) > 1 or how != "one position":
        description += f"; positions from {how}"
    return Volume(out, geometry, str(path)), description
