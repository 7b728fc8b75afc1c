"""Folders of frame images (PNG, JPEG, BMP, TIFF) read as one cine, and grey conversion of 2D frames.

Frames are ordered by a natural sort of their file names (``frame2.png`` before ``frame10.png``).
Every file's header is read first: all frames must have the same size, and the size limits of
:mod:`cineprop.io.volume` are checked before any pixel is decoded.

Array layout (the same as SimpleITK and 3D Slicer give for an image file): the volume is
``i×j×T`` with ``i`` along image columns (left → right) and ``j`` along rows (top → bottom), so a
folder of 640×480 frames becomes a ``640×480×T`` volume. Geometry: spacing 1 (pixels), origin 0,
identity direction, so Slicer shows the frames upright in its axial view.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.volume import Geometry, Volume, check_size

#: File endings read as frame images (matched case-insensitively).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: ITU-R BT.601 luma weights (R, G, B): the grey value of a colour pixel, the same Y that
#: YBR-coded DICOM and ffmpeg's grey output use.
LUMA = (0.299, 0.587, 0.114)


def natural_key(name: str) -> list:
    """Sort key for file names with numbers: ``frame2`` < ``frame10`` (case-insensitive)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name.lower())]


def to_grey(pixels: np.ndarray, colour_axis: bool) -> np.ndarray:
    """Grey float32 from grey or colour pixels.

    Args:
        pixels: ``...×C`` with ``C`` in 1..4 when ``colour_axis`` (RGB, RGBA, grey+alpha), else any shape.
    Returns:
        ``...`` float32: the BT.601 luma of RGB(A), the first channel of grey+alpha, alpha ignored.
    """
    pixels = np.asarray(pixels)
    if not colour_axis:
        return pixels.astype(np.float32, copy=False)
    channels = pixels.shape[-1]
    if channels in (1, 2):
        return pixels[..., 0].astype(np.float32)
    r, g, b = (pixels[..., c].astype(np.float32) for c in range(3))
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


def frame_files(folder: Path) -> list[Path]:
    """The frame images of ``folder`` (not hidden, not in subfolders), naturally sorted."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(FRAME_SUFFIXES)]
    return sorted(files, key=lambda p: natural_key(p.name))


def _open(path: Path):
    """Open an image lazily (Pillow parses only the header until pixels are asked for)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        raise InputError(where(path, "image dimensions exceed the limit")) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(where(path, f"not a readable image ({type(exc).__name__})")) from None


def _decode(path: Path) -> np.ndarray:
    """Decode one frame to ``rows×cols`` float32 grey."""
    from PIL import Image

    with _open(path) as image:
        try:
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                image = image.convert("RGBA" if image.mode in ("P", "PA") else "RGB")
            pixels = np.asarray(image)
        except Image.DecompressionBombError:
            raise InputError(where(path, "image dimensions exceed the limit")) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(where(path, f"image data is truncated or corrupt ({type(exc).__name__})")) from None
    if pixels.ndim not in (2, 3) or pixels.dtype.kind not in "uif":
        raise InputError(where(path, f"unsupported pixel layout {pixels.shape} of type {pixels.dtype}"))
    return to_grey(pixels, colour_axis=pixels.ndim == 3)


def read_frame_folder(folder: str | Path, files: Iterable[Path] | None = None) -> tuple[Volume, str]:
    """Read a folder of frame images as one ``i×j×T`` float32 volume (see the module docstring).

    Args:
        files: the frames, in order (default: :func:`frame_files` of ``folder``).
    Returns:
        the volume and a one-line description (``"24 PNG frames"``).
    Raises:
        InputError: no frames, frames of different sizes, unreadable frames, over the size limits.
    """
    folder = Path(folder)
    paths = list(files) if files is not None else frame_files(folder)
    if not paths:
        raise InputError(where(folder, f"no frame images ({', '.join(FRAME_SUFFIXES)}) in this folder"))
    check_size((1, 1, len(paths)), folder)  # refuse huge frame counts before opening any file
    if len(paths) < 2:
        raise InputError(where(folder, f"not a cine: 1 frame image ({paths[0].name}); a cine needs at least 2"))
    first = None
    for path in paths:  # headers only: sizes agree and fit the limits before any pixel is decoded
        with _open(path) as image:
            size = tuple(image.size)
        if first is None:
            first = (path, size)
            check_size((size[0], size[1], len(paths)), folder)
        elif size != first[1]:
            raise InputError(where(path, f"frame is {size[0]}×{size[1]} px but {first[0].name} is "
                                         f"{first[1][0]}×{first[1][1]} px; all frames must have the same size"))
    out = np.empty((first[1][0], first[1][1], len(paths)), dtype=np.float32)
    for k, path in enumerate(paths):
        grey = _decode(path)
        if grey.shape != (first[1][1], first[1][0]):
            raise InputError(where(path, f"decoded frame has shape {grey.shape}, header said {first[1]}"))
        out[:, :, k] = grey.T  # rows×cols → i (columns) × j (rows)
    kinds = sorted({p.suffix.lower().lstrip(".").upper() for p in paths})
    volume = Volume(out, Geometry.identity(3), str(folder))
    return volume, f"{len(paths)} {'/'.join(kinds)} frames"
