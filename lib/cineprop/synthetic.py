"""Tiny synthetic cines (moving, deforming shapes with noise) for fast tests and demos.

Nothing here is used to claim accuracy on real data; it exists so every component can be tested
in seconds with a known ground truth.
"""

from __future__ import annotations

import numpy as np


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def moving_shapes(height: int = 64, width: int = 64, frames: int = 12, labels: int = 2, noise: float = 0.08,
                  seed: int = 0, speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A cine of ``labels`` ellipses that drift, breathe and rotate over a smooth textured background.

    Args:
        speed: pixels of drift per frame (scaled by image size / 64).

    Returns:
        ``frames``: ``H×W×T`` float32 in about [0, 1]; ``labels``: ``H×W×T`` uint8 (0..labels), later
        labels drawn over earlier ones.
    """
    rng = np.random.default_rng(seed)
    h, w, t = height, width, frames
    scale = min(h, w) / 64.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = 0.25 + 0.08 * np.sin(xx / (7.0 * scale) + rng.uniform(0, 6)) * np.cos(yy / (9.0 * scale))
    image = np.zeros((h, w, t), np.float32)
    label = np.zeros((h, w, t), np.uint8)
    shapes = []
    for k in range(labels):
        shapes.append(dict(
            cy=rng.uniform(0.3, 0.7) * h, cx=rng.uniform(0.3, 0.7) * w,
            ry=rng.uniform(6, 10) * scale, rx=rng.uniform(8, 13) * scale,
            vy=rng.uniform(-1, 1) * speed * scale, vx=rng.uniform(-1, 1) * speed * scale,
            phase=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-0.08, 0.08),
            brightness=0.55 + 0.35 * (k + 1) / labels,
        ))
    for i in range(t):
        frame = background.copy()
        for k, sh in enumerate(shapes):
            breathe = 1.0 + 0.15 * np.sin(sh["phase"] + i * 0.5)
            cy = np.clip(sh["cy"] + sh["vy"] * i, sh["ry"] * 1.3, h - sh["ry"] * 1.3)
            cx = np.clip(sh["cx"] + sh["vx"] * i, sh["rx"] * 1.3, w - sh["rx"] * 1.3)
            mask = _ellipse(h, w, cy, cx, sh["ry"] * breathe, sh["rx"] / breathe, sh["spin"] * i)
            frame[mask] = sh["brightness"] + 0.05 * np.sin(xx[mask] / 3.0)
            label[:, :, i][mask] = k + 1
        image[:, :, i] = frame + rng.normal(0, noise, (h, w)).astype(np.float32)
    return image, label
