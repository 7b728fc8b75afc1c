"""Cropping cines to the image region: an explicit box, or ``auto`` (the moving region).

Ultrasound and endoscopy videos carry a static frame around the image: a black border, burned-in
text (patient, probe, depth scale), logos. ``--crop`` keeps only the image region, and the volume's
origin moves with the crop so the result still lies where the input did.

A crop is given in the coordinates of an image viewer: ``y0:y1,x0:x1`` keeps rows ``y0 ≤ y < y1``
(top → bottom) and columns ``x0 ≤ x < x1`` (left → right), like a numpy slice; an end may be left
out (``60:,:`` drops the first 60 rows). Volumes are ``i×j×…`` with ``i`` along columns and ``j``
along rows, so the box is applied as ``array[x0:x1, y0:y1, ...]``.

``auto`` keeps the bounding box of the region that changes over time (:func:`auto_crop_box`):

1. per pixel, the standard deviation of its intensity over the frames (for a 4D volume, the largest
   over the slice positions), as a fraction of the volume's intensity range, scaled to 0..255;
2. a pixel is *moving* when that value exceeds :data:`AUTO_THRESHOLD` (4 of 255, about 1.6 % of
   the range); static borders, text, scales and logos are not moving;
3. a binary opening with a 3×3 square drops isolated and one-pixel-thin moving pixels (video
   compression noise at the edges of static text);
4. of the moving pixels' 8-connected regions the largest is kept, which drops small changing
   overlays apart from the image (a frame counter, a clock);
5. its bounding box, grown by :data:`AUTO_MARGIN` pixels on each side (within the frame), is the crop.

It fails with a clear error when the moving region is smaller than :data:`AUTO_MIN_FRACTION` of
the frame (a still clip). It cannot separate overlays that move *and* touch the image (an ECG trace
drawn across the sector, a colour box); give the box explicitly then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cineprop.errors import InputError, where
from cineprop.io.volume import Geometry, Volume

#: Temporal standard deviation (on a 0..255 scale of the volume's intensity range) above which a pixel moves.
AUTO_THRESHOLD = 4.0
#: Pixels added on each side of the moving region's bounding box.
AUTO_MARGIN = 2
#: Smallest accepted moving region, as a fraction of the frame area.
AUTO_MIN_FRACTION = 0.01

_RANGE = r"\s*(\d*)\s*:\s*(\d*)\s*"
_SPEC = re.compile(rf"^{_RANGE},{_RANGE}$")


@dataclass(frozen=True)
class CropBox:
    """A crop in viewer coordinates: rows ``y0:y1`` and columns ``x0:x1`` (half-open, pixels)."""

    y0: int
    y1: int
    x0: int
    x1: int

    def __str__(self) -> str:
        return f"{self.y0}:{self.y1},{self.x0}:{self.x1}"


def parse_crop(spec: str | None, path: object = None) -> str | tuple[int | None, ...] | None:
    """Parse a ``--crop`` value: ``None``/``"none"``, ``"auto"`` or ``"y0:y1,x0:x1"`` (ends optional).

    Returns:
        ``None``, ``"auto"`` or ``(y0, y1, x0, x1)`` with ``None`` for an omitted end.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    if spec.strip().lower() == "auto":
        return "auto"
    match = _SPEC.match(spec)
    if not match:
        raise InputError(where(path, f"--crop {spec!r}: expected 'auto' or 'y0:y1,x0:x1' "
                                     "(rows then columns, in pixels, e.g. 40:560,100:700)"))
    return tuple(int(v) if v else None for v in match.groups())


def resolve_box(crop: tuple[int | None, ...], shape: tuple[int, ...], path: object = None) -> CropBox:
    """Fill omitted ends and check a parsed box against a volume shape (``i×j×…``: columns, rows)."""
    cols, rows = int(shape[0]), int(shape[1])
    y0, y1, x0, x1 = crop
    y0, x0 = y0 or 0, x0 or 0
    y1 = rows if y1 is None else y1
    x1 = cols if x1 is None else x1
    for name, lo, hi, size in (("rows", y0, y1, rows), ("columns", x0, x1, cols)):
        if hi > size:
            raise InputError(where(path, f"--crop {name} {lo}:{hi} go past the frame's {size} {name}"))
        if hi - lo < 4:
            raise InputError(where(path, f"--crop {name} {lo}:{hi} keep fewer than 4 {name}"))
    return CropBox(y0, y1, x0, x1)


def _motion(array: np.ndarray) -> np.ndarray:
    """Per-pixel temporal standard deviation on a 0..255 scale of the intensity range, ``i×j``."""
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros(array.shape[:2], dtype=np.float32)
    std = array.std(axis=-1, dtype=np.float64)
    if std.ndim == 3:  # 4D: i×j×Z → the most moving slice position
        std = std.max(axis=2)
    return (std * (255.0 / (hi - lo))).astype(np.float32)


def auto_crop_box(array: np.ndarray, path: object = None) -> CropBox:
    """The crop ``auto`` chooses for an ``i×j×T`` or ``i×j×Z×T`` array (rules in the module docstring)."""
    from scipy import ndimage

    moving = _motion(array) > AUTO_THRESHOLD
    moving = ndimage.binary_opening(moving, structure=np.ones((3, 3), bool))
    regions, count = ndimage.label(moving, structure=np.ones((3, 3), bool))
    cols, rows = array.shape[:2]
    if count:
        sizes = np.bincount(regions.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        area = int(sizes[largest - 1])
    else:
        area = 0
    if area < AUTO_MIN_FRACTION * cols * rows:
        raise InputError(where(path, "--crop auto found no moving image region (the clip looks still); "
                                     "give the box as --crop y0:y1,x0:x1"))
    xs, ys = np.nonzero(regions == largest)
    x0, x1 = max(int(xs.min()) - AUTO_MARGIN, 0), min(int(xs.max()) + 1 + AUTO_MARGIN, cols)
    y0, y1 = max(int(ys.min()) - AUTO_MARGIN, 0), min(int(ys.max()) + 1 + AUTO_MARGIN, rows)
    return resolve_box((y0, y1, x0, x1), array.shape, path)


def crop_volume(volume: Volume, crop: str | tuple | None, path: object = None) -> tuple[Volume, CropBox | None]:
    """Apply a parsed crop (see :func:`parse_crop`) to a volume; the origin moves to the box's corner.

    Returns:
        the cropped volume (a copy) and the box used (``None`` when ``crop`` is ``None``).
    """
    if crop is None:
        return volume, None
    path = path if path is not None else volume.path
    box = auto_crop_box(volume.array, path) if crop == "auto" else resolve_box(crop, volume.shape, path)
    array = np.ascontiguousarray(volume.array[box.x0:box.x1, box.y0:box.y1])
    g = volume.geometry
    dim = g.dimension
    offset = np.zeros(dim)
    offset[:2] = (box.x0 * g.spacing[0], box.y0 * g.spacing[1])
    origin = np.asarray(g.origin) + np.asarray(g.direction, dtype=float).reshape(dim, dim) @ offset
    geometry = Geometry(g.spacing, tuple(float(v) for v in origin), g.direction)
    return Volume(array, geometry, volume.path), box
