"""Pictures a person would rather look at than read: contour overlays of a cine."""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from cineprop.io.atomic import atomic_path
from cineprop.transforms import to_uint8

#: RGB colour per label value (cycled): red, green, blue-cyan, yellow, magenta, orange.
PALETTE = [(230, 60, 60), (60, 200, 80), (70, 170, 255), (250, 220, 40), (220, 80, 220), (255, 150, 40)]
GT_COLOUR = (255, 255, 255)


def colour(label: int) -> tuple[int, int, int]:
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def _contours(canvas: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], thickness: int) -> None:
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, found, -1, rgb, thickness, lineType=cv2.LINE_AA)


def overlay_frames(frames: np.ndarray, prediction: np.ndarray | None = None, truth: np.ndarray | None = None,
                   support_frames: Sequence[int] = (), scale: int = 2) -> list[np.ndarray]:
    """Render each frame as RGB uint8 with contours.

    Args:
        frames: ``H×W×T`` intensities.
        prediction, truth: ``H×W×T`` label arrays; prediction contours take the label's colour,
            ground truth is drawn thin in white.
        support_frames: frames drawn with a coloured border and an ``S``.
        scale: upsampling factor so thin contours stay visible.

    Returns:
        ``T`` images of shape ``(H·scale)×(W·scale)×3``; the image row is the cine's first axis.
    """
    grey = to_uint8(frames)
    out = []
    for t in range(frames.shape[2]):
        img = cv2.resize(grey[:, :, t], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        canvas = np.repeat(img[:, :, None], 3, axis=2).copy()
        for labels, thickness, fixed in ((truth, 1, GT_COLOUR), (prediction, 2, None)):
            if labels is None:
                continue
            big = cv2.resize(labels[:, :, t], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            for value in np.unique(big):
                if value:
                    _contours(canvas, big == value, fixed or colour(int(value)), thickness)
        if t in support_frames:
            cv2.rectangle(canvas, (0, 0), (canvas.shape[1] - 1, canvas.shape[0] - 1), (255, 200, 0), 3)
            cv2.putText(canvas, "S", (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 200, 0), 2)
        cv2.putText(canvas, str(t), (canvas.shape[1] - 30, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
        out.append(canvas)
    return out


def save_strip(path: str | os.PathLike, images: Sequence[np.ndarray], columns: int = 10,
               title: str | None = None) -> None:
    """Tile RGB images into a grid PNG (``columns`` per row), written atomically."""
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    cols = min(columns, len(images))
    top = 28 if title else 0
    grid = np.zeros((rows * h + top, cols * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[top + r * h: top + (r + 1) * h, c * w: (c + 1) * w] = img
    if title:
        cv2.putText(grid, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
