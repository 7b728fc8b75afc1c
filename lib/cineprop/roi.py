"""The region of interest a cine is processed in: a square around the support, resized to ``R×R``.

Structures in a cine stay near where they were painted, so the network looks at a square around
the painted masks (grown by a margin) at its working resolution instead of the whole frame: a
small structure keeps its detail at a fixed cost. Crops that reach past the frame are padded with
the border value; probabilities are pasted back with the inverse transform (0 outside the ROI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np


@dataclass(frozen=True)
class Roi:
    """A square ``side × side`` window with top-left corner ``(y0, x0)`` in frame pixels (may overhang)."""

    y0: float
    x0: float
    side: float

    def _matrix(self, resolution: int) -> np.ndarray:
        s = resolution / self.side
        return np.array([[s, 0.0, -self.x0 * s], [0.0, s, -self.y0 * s]], np.float64)

    def crop(self, image: np.ndarray, resolution: int, nearest: bool = False) -> np.ndarray:
        """``H×W`` → ``R×R`` (bilinear, or nearest for masks), border replicated."""
        flags = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if self.side > resolution else cv2.INTER_LINEAR
        border = cv2.BORDER_CONSTANT if nearest else cv2.BORDER_REPLICATE
        return cv2.warpAffine(np.asarray(image, np.float32), self._matrix(resolution), (resolution, resolution),
                              flags=flags, borderMode=border, borderValue=0)

    def paste(self, patch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``R×R`` map → ``H×W`` (bilinear), 0 outside the ROI."""
        resolution = patch.shape[0]
        return cv2.warpAffine(np.asarray(patch, np.float32), self._matrix(resolution), (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)


def bounding_box(masks: Iterable[np.ndarray]) -> tuple[int, int, int, int] | None:
    """``(y0, x0, y1, x1)`` (exclusive end) of the union of ``H×W`` masks, ``None`` if all empty."""
    box = None
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        b = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        box = b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3]))
    return box


def roi_around(box: tuple[int, int, int, int] | None, shape: tuple[int, int], margin: float = 0.75,
               min_side: float = 64.0) -> Roi:
    """A square ROI around ``box`` grown by ``margin`` × its larger side on each edge.

    The side is at least ``min_side`` (frame pixels) and at most the frame's larger side; the ROI
    is shifted to stay inside the frame where it fits. ``box=None`` gives the whole frame.
    """
    h, w = shape
    full = float(max(h, w))
    if box is None:
        return Roi((h - full) / 2.0, (w - full) / 2.0, full)
    bh, bw = box[2] - box[0], box[3] - box[1]
    side = float(np.clip(max(bh, bw) * (1.0 + 2.0 * margin), min(min_side, full), full))
    cy, cx = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    y0 = float(np.clip(cy - side / 2.0, min(0.0, h - side), max(0.0, h - side)))
    x0 = float(np.clip(cx - side / 2.0, min(0.0, w - side), max(0.0, w - side)))
    return Roi(y0, x0, side)
