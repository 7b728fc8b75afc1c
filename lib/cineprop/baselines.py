"""Baselines every learned method is measured against.

* ``copy``: every query frame gets the mask of its nearest support frame.
* ``flow``: the nearest support masks are carried frame by frame with dense optical flow
  (:mod:`cineprop.flow`), from both sides when the frame lies between two supports, blended by
  temporal distance.
* ``demons``: the same, with SimpleITK demons registration between consecutive frames (the
  registration-based tool a Slicer user would reach for today).
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

    def field(self, frames: np.ndarray):
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

    def __init__(self, field: FlowField | None = None):
        self._field = field          # a precomputed field of the same cine (a session reuses its own)

    def field(self, frames: np.ndarray) -> FlowField:
        return self._field if self._field is not None else FlowField(frames)


class DemonsPropagator(WarpPropagator):
    """``demons``: SimpleITK fast symmetric-forces demons registration frame to frame."""

    name = "demons"

    def __init__(self, iterations: int = 50):
        self.iterations = int(iterations)

    def field(self, frames: np.ndarray):
        from cineprop.registration import DemonsField

        return DemonsField(frames, self.iterations)
