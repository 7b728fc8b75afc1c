"""The one definition of intensity preprocessing, shared by training, inference and baselines."""

from __future__ import annotations

import numpy as np

#: Percentiles mapped to 0 and 1: robust to burned-in text, calipers and bright artefacts.
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def normalise_intensity(frames: np.ndarray) -> np.ndarray:
    """Scale a whole cine (or image) to [0, 1] with robust percentiles, as float32.

    One scale for the whole cine keeps frame-to-frame brightness changes, which carry motion.
    A constant cine maps to zeros.
    """
    frames = np.asarray(frames, dtype=np.float32)
    lo, hi = np.percentile(frames, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi <= lo:
        return np.zeros_like(frames)
    return np.clip((frames - lo) / (hi - lo), 0.0, 1.0)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Normalise (see :func:`normalise_intensity`) and quantise to uint8 for OpenCV."""
    return (normalise_intensity(frames) * 255.0 + 0.5).astype(np.uint8)
