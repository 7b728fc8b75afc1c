"""Draw the module icon (``CineProp/Resources/Icons/CineProp.png``, 128×128) with numpy; no downloads.

Three stacked cine frames with a painted structure on the front frame and its propagated copies
fading into the frames behind.  Run: ``python slicer_extension/tools/make_icon.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 128
OUT = Path(__file__).resolve().parents[1] / "CineProp" / "Resources" / "Icons" / "CineProp.png"


def icon() -> np.ndarray:
    """RGBA ``SIZE×SIZE`` uint8."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.float32)
    for depth, (x0, y0) in enumerate([(44, 10), (28, 26), (12, 42)]):   # back → front
        w = h = 72
        inside = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        border = inside & ~((xx >= x0 + 3) & (xx < x0 + w - 3) & (yy >= y0 + 3) & (yy < y0 + h - 3))
        shade = 40 + 25 * depth
        texture = shade + 18 * np.sin((xx - x0) / 6.0) * np.cos((yy - y0) / 9.0)
        rgba[inside, :3] = texture[inside, None]
        rgba[border, :3] = (200, 205, 215)
        rgba[inside, 3] = 255
        cx, cy = x0 + w * 0.5 + 4 * (2 - depth), y0 + h * 0.5
        blob = ((xx - cx) / (14 - 2 * (2 - depth))) ** 2 + ((yy - cy) / 17) ** 2 <= 1.0
        alpha = (0.35, 0.6, 1.0)[depth]
        red = np.array([231, 76, 60], dtype=np.float32)
        rgba[blob & inside, :3] = (1 - alpha) * rgba[blob & inside, :3] + alpha * red
    return np.clip(rgba, 0, 255).astype(np.uint8)


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(icon(), "RGBA").save(OUT, optimize=True)
    print(OUT)
