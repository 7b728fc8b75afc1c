"""Video files (mp4, avi, mov, mkv, ...) read as grey cines with the ffmpeg of ``imageio-ffmpeg``.

``imageio-ffmpeg`` ships a static ffmpeg binary in its wheel, so no system codec is needed.
ffmpeg decodes the frames straight to 8-bit grey (the luma Y; for the usual YUV videos that is
the stored grey image, unchanged). The frame size and the estimated frame count (duration × frame
rate) from the file's header are checked against the size limits before decoding, and decoding
stops as soon as the limits are passed, so a hostile or endless stream cannot fill the memory. A video that decodes to fewer than
:data:`TRUNCATED_FRACTION` of the frames its header promises is refused as truncated (a cut
mp4 has no index at all and is refused as unreadable).

Array layout and geometry: ``i×j×T`` with ``i`` along image columns and ``j`` along rows (as
SimpleITK reads an image file), spacing ``(1, 1, 1000 / fps)``: pixels, and the frame interval in
ms; origin 0, identity direction.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.volume import MAX_FRAMES, MAX_VOXELS, Geometry, Volume, check_size

#: A video decoding to fewer than this fraction of the frames its header promises is refused as truncated.
TRUNCATED_FRACTION = 0.75
#: File endings read as video (matched case-insensitively).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip() and not line.startswith("===")]
    interesting = [line for line in lines if "Invalid" in line or "error" in line.lower() or "moov" in line]
    return (interesting or lines or ["unknown error"])[-1][:160]


def read_video(path: str | os.PathLike) -> tuple[Volume, str]:
    """Read a video file as an ``i×j×T`` float32 grey volume (0..255).

    Returns:
        the volume and a one-line description (``"video h264 640×480, 48 frames at 25 fps"``).
    Raises:
        InputError: unreadable or truncated file, no video stream, over the size limits.
    """
    import imageio_ffmpeg

    p = Path(path)
    if not p.is_file():
        raise InputError(where(p, "file not found"))
    reader = imageio_ffmpeg.read_frames(str(p), pix_fmt="gray", bits_per_pixel=8)
    frames: list[bytes] = []
    try:
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration, ValueError) as exc:
            raise InputError(where(p, f"not a readable video ({_first_line(exc)})")) from None
        width, height = (int(v) for v in meta.get("size") or (0, 0))
        if width < 1 or height < 1:
            raise InputError(where(p, "no video stream in this file"))
        fps = float(meta.get("fps") or 0.0)
        duration = float(meta.get("duration") or 0.0)
        estimate = math.ceil(fps * duration) if fps > 0 and duration > 0 else 1
        check_size((width, height, max(min(estimate, MAX_FRAMES + 1), 1)), p)
        frame_bytes = width * height
        try:
            for frame in reader:
                frames.append(frame)
                if len(frames) > MAX_FRAMES or len(frames) * frame_bytes > MAX_VOXELS:
                    check_size((width, height, len(frames)), p)  # raises with the limit that was passed
        except RuntimeError as exc:
            raise InputError(where(p, f"video data is truncated or corrupt after {len(frames)} frames "
                                      f"({_first_line(exc)})")) from None
    finally:
        reader.close()  # stops ffmpeg
    if estimate > 2 and len(frames) < TRUNCATED_FRACTION * estimate:
        raise InputError(where(p, f"video data is truncated: the header promises about {estimate} frames "
                                  f"({duration:g} s at {fps:g} fps) but only {len(frames)} decode"))
    if len(frames) < 2:
        raise InputError(where(p, f"not a cine: the video has {len(frames)} frame{'s' * (len(frames) != 1)} "
                                  "(a cine needs at least 2)"))
    array = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), height, width)
    del frames
    volume = np.empty((width, height, array.shape[0]), dtype=np.float32)
    volume[...] = array.transpose(2, 1, 0)  # T×rows×cols → i (columns) × j (rows) × T
    interval = 1000.0 / fps if fps > 0 else 1.0
    geometry = Geometry((1.0, 1.0, interval), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()))
    codec = str(meta.get("codec", "") or "").split(" ")[0]
    rate = f" at {fps:g} fps" if fps > 0 else " (frame rate unknown)"
    return Volume(volume, geometry, str(p)), f"video {codec} {width}×{height} px, {volume.shape[2]} frames{rate}"
