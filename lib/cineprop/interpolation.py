"""``interpolate``: linear shape interpolation between painted frames (what a radiologist fills with today).

Between two painted frames ``a < t < b`` of a label, the label's signed distance maps (positive
inside) are blended with weights ``(b − t)/(b − a)`` and ``(t − a)/(b − a)`` and thresholded at 0,
so a shape morphs linearly from one painting to the next (Slicer's "fill between slices" does the
same along z). Outside the painted span the nearest painting is repeated, as ``copy`` does. The
image is never looked at; confidence is ``copy``'s, ``1 / (1 + d)`` with the distance ``d`` to the
nearest painted frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cineprop.baselines import CopyPropagator
from cineprop.support import neighbours


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """``H×W`` float32: distance to the boundary in pixels, positive inside ``mask``, ≤ 0 outside."""
    mask = np.asarray(mask, bool)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return (inside - outside).astype(np.float32)


class InterpolatePropagator(CopyPropagator):
    """Linear signed-distance interpolation between painted frames (see the module docstring)."""

    name = "interpolate"

    def label_probability(self, masks: dict[int, np.ndarray], t: int) -> np.ndarray:
        frames = sorted(masks)
        sdf = {f: signed_distance(masks[f]) for f in frames}
        prob = np.zeros(masks[frames[0]].shape + (t,), np.float32)
        for i in range(t):
            a, b = neighbours(frames, i)
            if a is not None and b is not None and a != b:
                wa = (b - i) / (b - a)
                d = wa * sdf[a] + (1.0 - wa) * sdf[b]
            else:
                d = sdf[a if a is not None else b]
            prob[:, :, i] = np.clip(0.5 + 0.5 * d, 0.0, 1.0)    # a one-pixel ramp; 0.5 on the boundary
        return prob
