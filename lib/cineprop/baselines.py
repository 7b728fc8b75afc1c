"""Baselines every learned method is measured against.

* ``copy``: every query frame gets the mask of its nearest support frame.
* ``flow``: the nearest support masks are carried frame by frame with dense optical flow
  (:mod:`cineprop.flow`), from both sides when the frame lies between two supports, blended by
  temporal distance.
* ``dis``: the same with OpenCV's DIS optical flow instead of Farnebäck.
* ``demons``, ``syn``, ``elastix``: the same with deformable registration between consecutive
  frames (SimpleITK demons, ANTs SyN, elastix B-spline; :mod:`cineprop.registration`): the
  registration tools a Slicer user would reach for today. ``syn`` and ``elastix`` need the optional
  ``peers`` extra.

:data:`CARRIERS` names every field-based method; a model session can blend with any of them.
"""

from __future__ import annotations

import time

import numpy as np

from cineprop.flow import FlowField, warp
from cineprop.io.cine import Cine
from cineprop.metrics import dice
from cineprop.propagation import Propagation, finish
from cineprop.shots import certainty
from cineprop.support import SupportSet, neighbours


class CopyPropagator:
    """Repeat the nearest support frame's mask (ties go to the earlier frame).

    Confidence decays with the distance ``d`` to the nearest support: ``1 / (1 + d)``.
    """

    name = "copy"

    def label_probability(self, masks: dict[int, np.ndarray], t: int) -> np.ndarray:
        """``H×W×T`` foreground probability of one label from its painted masks (frame → ``H×W`` bool)."""
        frames = sorted(masks)
        prob = np.zeros(masks[frames[0]].shape + (t,), np.float32)
        for i in range(t):
            prob[:, :, i] = masks[min(frames, key=lambda f: (abs(f - i), f))]
        return prob

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        t = cine.num_frames
        probabilities = {label: self.label_probability(support.masks[label], t) for label in support.labels}
        distance = np.array([min(abs(f - i) for f in support.frames) for i in range(t)], np.float32)
        return finish(probabilities, 1.0 / (1.0 + distance), support, time.perf_counter() - start)


class WarpPropagator:
    """Warp the nearest support masks frame by frame with a dense displacement field.

    Soft masks are warped (bilinear), so uncertainty shows as blur; frames between two supports
    blend both directions with weights ``(b − t)/(b − a)`` and ``(t − a)/(b − a)``. Confidence is
    the Dice agreement of the two directions where both exist, else the crispness of the warped
    mask. Subclasses choose the field: optical flow or registration.
    """

    name = "warp"

    def __init__(self, field=None):
        self._field = field          # a precomputed field of the same cine (a session reuses its own)

    def field(self, frames: np.ndarray):
        """The cine's field object (``step(t, s)`` → ``H×W×2`` displacement; see :mod:`cineprop.flow`)."""
        return self._field if self._field is not None else self.make_field(frames)

    def make_field(self, frames: np.ndarray):
        raise NotImplementedError

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        h, w, t = cine.shape
        field = self.field(cine.frames)
        probabilities = {}
        confidence = np.zeros((len(support.labels), t), np.float32)
        for slot, label in enumerate(support.labels):
            frames = support.frames_of(label)
            masks = {f: m.astype(np.float32) for f, m in support.masks[label].items()}
            forward = self._chain(field, masks, frames, t, +1)
            backward = self._chain(field, masks, frames, t, -1)
            prob = np.zeros((h, w, t), np.float32)
            for i in range(t):
                a, b = neighbours(frames, i)
                if a is not None and b is not None and a != b:
                    wa = (b - i) / (b - a)
                    prob[:, :, i] = wa * forward[i] + (1 - wa) * backward[i]
                    confidence[slot, i] = dice(forward[i] > 0.5, backward[i] > 0.5)
                else:
                    prob[:, :, i] = forward[i] if a is not None else backward[i]
                    confidence[slot, i] = certainty(prob[:, :, i])
            probabilities[label] = prob
        return finish(probabilities, confidence.mean(axis=0), support, time.perf_counter() - start)

    @staticmethod
    def _chain(field, masks: dict[int, np.ndarray], frames: list[int], t: int,
               step: int) -> dict[int, np.ndarray]:
        """Carry each support mask in direction ``step`` until the next support frame (exclusive)."""
        out: dict[int, np.ndarray] = {}
        order = range(t) if step > 0 else range(t - 1, -1, -1)
        current = None
        for i in order:
            if i in masks:
                current = masks[i]
            elif current is not None:
                current = warp(current, field.step(i, i - step))
            if current is not None:
                out[i] = current
        return out


class FlowPropagator(WarpPropagator):
    """``flow``: Farnebäck dense optical flow between consecutive frames (:mod:`cineprop.flow`)."""

    name = "flow"
    flow_method = "farneback"

    def make_field(self, frames: np.ndarray) -> FlowField:
        return FlowField(frames, self.flow_method)


class DisPropagator(FlowPropagator):
    """``dis``: OpenCV DIS optical flow (MEDIUM preset) between consecutive frames."""

    name = "dis"
    flow_method = "dis"


class DemonsPropagator(WarpPropagator):
    """``demons``: SimpleITK fast symmetric-forces demons registration frame to frame."""

    name = "demons"

    def __init__(self, field=None, iterations: int = 50):
        super().__init__(field)
        self.iterations = int(iterations)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import DemonsField

        return DemonsField(frames, self.iterations)


class SynPropagator(WarpPropagator):
    """``syn``: ANTs SyN registration frame to frame (``antspyx``, optional ``peers`` extra)."""

    name = "syn"

    def __init__(self, field=None):
        from cineprop.registration import require

        require("ants", "antspyx", self.name)           # fail when built, not on the first cine
        super().__init__(field)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import SynField

        return SynField(frames)


class ElastixPropagator(WarpPropagator):
    """``elastix``: elastix B-spline registration frame to frame (``itk-elastix``, optional ``peers`` extra)."""

    name = "elastix"

    def __init__(self, field=None):
        from cineprop.registration import require

        require("itk", "itk-elastix", self.name)
        super().__init__(field)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import ElastixField

        return ElastixField(frames)


#: Field-based methods by name: what a model session may blend with (``SessionConfig.flow_method``).
CARRIERS: dict[str, type[WarpPropagator]] = {
    cls.name: cls for cls in (FlowPropagator, DisPropagator, DemonsPropagator, SynPropagator, ElastixPropagator)}
