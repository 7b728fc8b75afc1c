"""``interpolate``: linear shape interpolation between painted frames (what a radiologist fills with today).

Between two painted frames ``a < t < b`` of a label, the label's signed distance maps (positive
inside) are blended with weights ``(b − t)/(b − a)`` and ``(t − a)/(b − a)`` and thresholded at 0,
so a shape morphs linearly from one painting to the next (Slicer's "fill between slices" does the
same along z). Outside the painted span the nearest painting is repeated, as ``copy`` does. The
image is never looked at; confidence decays as ``1 / (1 + d)`` with the distance ``d`` to the
nearest painted frame of any label.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from cineprop.io.cine import Cine
from cineprop.propagation import Propagation, finish
from cineprop.support import SupportSet, neighbours


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """``H×W`` float32: distance to the boundary in pixels, positive inside ``mask``, ≤ 0 outside."""
    mask = np.asarray(mask, bool)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return (inside - outside).astype(np.float32)


class InterpolatePropagator:
    """Linear signed-distance interpolation between painted frames (see the module docstring)."""

    name = "interpolate"

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        h, w, t = cine.shape
        probabilities = {}
        distance = np.full(t, np.inf)
        for label in support.labels:
            frames = support.frames_of(label)
            sdf = {f: signed_distance(support.masks[label][f]) for f in frames}
            prob = np.zeros((h, w, t), np.float32)
            for i in range(t):
                a, b = neighbours(frames, i)
                if a is not None and b is not None and a != b:
                    wa = (b - i) / (b - a)
                    d = wa * sdf[a] + (1.0 - wa) * sdf[b]
                else:
                    d = sdf[a if a is not None else b]
                prob[:, :, i] = np.clip(0.5 + 0.5 * d, 0.0, 1.0)    # a one-pixel ramp; 0.5 on the boundary
                distance[i] = min(distance[i], min(abs(f - i) for f in frames))
            probabilities[label] = prob
        return finish(probabilities, 1.0 / (1.0 + distance), support, time.perf_counter() - start)
