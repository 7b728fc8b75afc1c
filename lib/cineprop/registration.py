"""Frame-to-frame deformable registration (SimpleITK demons): what a Slicer user would use today.

:class:`DemonsField` offers the same ``step(t, s)`` as :class:`cineprop.flow.FlowField`: an
``H×W×2`` displacement (dx, dy) such that ``frame_t(x) ≈ frame_s(x + d(x))``, so the same
propagator carries masks with either.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from cineprop.transforms import normalise_intensity


class DemonsField:
    """Lazily computed, cached demons displacement fields between consecutive frames.

    Args:
        frames: ``H×W×T`` intensities.
        iterations: demons iterations per frame pair.
        smoothing: standard deviation (pixels) of the displacement-field smoothing.
    """

    def __init__(self, frames: np.ndarray, iterations: int = 50, smoothing: float = 1.5):
        self.frames = normalise_intensity(frames)
        self.iterations = iterations
        self.smoothing = smoothing
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _image(self, t: int) -> sitk.Image:
        return sitk.GetImageFromArray(np.ascontiguousarray(self.frames[:, :, t]))

    def step(self, t: int, s: int) -> np.ndarray:
        key = (t, s)
        if key not in self._cache:
            demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
            demons.SetNumberOfIterations(self.iterations)
            demons.SetStandardDeviations(self.smoothing)
            fixed, moving = self._image(t), self._image(s)
            moving = sitk.HistogramMatching(moving, fixed, 256, 7)
            field = demons.Execute(fixed, moving)
            self._cache[key] = sitk.GetArrayFromImage(field).astype(np.float32)  # H×W×2, (dx, dy)
        return self._cache[key]
