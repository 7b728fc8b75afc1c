"""The session's flow blend: the painted masks carried by a registration peer lead, the network decides
where the carrier is unsure (``SessionConfig.flow_weight``, ``flow_method``; see :mod:`cineprop.session`).

:class:`CarrierBlend` is the part of :class:`~cineprop.session.PropagationSession` that owns the carrier:
its field (computed once per session), its carried masks (once per support set) and the blend with
the network's probabilities, which also gives the frame confidence.
"""

from __future__ import annotations

import numpy as np

from cineprop.flow import flow_box
from cineprop.metrics import dice
from cineprop.propagation import Propagation
from cineprop.support import SupportSet


def blend_with_flow(model: np.ndarray, carried: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """``(1 − weight)·model + weight·carried`` (both ``H×W×T``) and their per-frame Dice agreement (T)."""
    agreement = np.array([dice(model[:, :, i] > 0.5, carried[:, :, i] > 0.5) for i in range(model.shape[2])],
                         np.float32)
    return (1.0 - weight) * model + weight * carried, agreement


class CarrierBlend:
    """Mixin of :class:`~cineprop.session.PropagationSession` (uses its ``config``, ``cine`` and ``supports``;
    keeps ``_flow_field``, ``_carrier`` and ``_flow_carried``, which the session resets)."""

    def flow_carried(self, support: SupportSet) -> Propagation:
        """The ``flow_method`` baseline on this cine (fields computed once per session, the result once per support)."""
        from cineprop.baselines import CARRIERS
        from cineprop.errors import CinepropError

        if self.config.flow_method not in CARRIERS:
            raise CinepropError(f"unknown flow_method {self.config.flow_method!r}; choose one of {', '.join(CARRIERS)}")
        carrier = CARRIERS[self.config.flow_method]
        if self.config.flow_box:
            carrier.require_boxable("flow_box")
        box = flow_box(support.all_masks(), self.cine.shape[:2]) if self.config.flow_box else None
        if self._flow_field is None or getattr(self._flow_field, "box", None) != box:   # new box: new flows
            self._flow_field = carrier().boxed_field(self.cine.frames, box)
            self._carrier = carrier(self._flow_field, **self.config.carrier_options())
            self._flow_carried = None
        key = tuple((label, f, hash(m.tobytes()))
                    for label in support.labels for f, m in sorted(support.masks[label].items()))
        if self._flow_carried is None or self._flow_carried[0] != key:      # stage 2 of relearning asks again
            self._flow_carried = key, self._carrier.propagate(self.cine, support)
        return self._flow_carried[1]

    def _blend_flow(self, probabilities: dict[int, np.ndarray], support: SupportSet) -> np.ndarray:
        """Blend ``probabilities`` (label → H×W×T) with the flow-carried masks, in place; return the
        frame confidence (labels × T): the carrier's own confidence bounded by the network–carrier
        agreement, averaged with the anchored registration's match with the painted frame
        (:func:`cineprop.flow.registration_match`) when the carrier anchors.

        The blended masks are mostly the carrier's, so the network's crispness says little about
        them; on the 20 ACDC val cines the "next flagged" loop of ``cineprop simulate`` (target 0.85)
        painted 86.7 % of the frames with the network's certainty in the minimum and 71.0 % without
        it. The agreement alone flagged 61 % of the smooth-motion tuning frames, where 1 % are bad (the
        network drifts on long cines, the carrier does not); averaged with the match, 7 %, with the
        same "next flagged" result on ACDC val (68.1 %) (docs/benchmarks.md, "Annotation burden").
        """
        carried = self.flow_carried(support)
        match = carried.details.get("match")            # anchored carrier: registration match per label
        confidence = np.empty((len(self.supports), self.cine.num_frames), np.float32)
        for slot, label in enumerate(sorted(self.supports)):
            probabilities[label], agreement = blend_with_flow(probabilities[label], carried.probabilities[label],
                                                              self.config.flow_weight)
            if match is not None:
                agreement = 0.5 * (agreement + np.clip(match[label], 0.0, 1.0))
            confidence[slot] = np.minimum(agreement, carried.confidence)
        return confidence
