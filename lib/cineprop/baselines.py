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

:data:`CARRIERS` names every field-based method; a model session can blend with any of them. With
``anchor`` a carrier may also ``refine``: the carrier refiner (:mod:`cineprop.refine`) corrects each
carried mask on frames the registration does not explain (:meth:`WarpPropagator._refine`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from cineprop.errors import CinepropError
from cineprop.flow import FlowField, anchored_carry, band_ncc, flow_box, match_band, registration_match, warp
from cineprop.io.cine import Cine
from cineprop.metrics import dice
from cineprop.propagation import Propagation, finish
from cineprop.session_config import REFINE_BELOW, REFINE_STEP
from cineprop.shots import certainty
from cineprop.support import SupportSet, nearest, neighbours, outward_runs


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
            prob[:, :, i] = masks[nearest(frames, i)]
        return prob

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        t = cine.num_frames
        probabilities = {label: self.label_probability(support.masks[label], t) for label in support.labels}
        distance = np.array([min(abs(f - i) for f in support.frames) for i in range(t)], np.float32)
        return finish(probabilities, 1.0 / (1.0 + distance), support, time.perf_counter() - start)


class WarpPropagator:
    """Warp the nearest support masks frame by frame with a dense displacement field.

    Soft masks are warped (bilinear), so uncertainty shows as blur (``anchor``: each frame's mask is
    the painted mask warped once, see :func:`anchored_carry`); frames between two supports
    blend both directions with weights ``(b − t)/(b − a)`` and ``(t − a)/(b − a)`` (with
    ``match_weight``, also by each direction's registration match: :meth:`_chain_weight`). Confidence is
    the Dice agreement of the two directions where both exist, else the crispness of the warped
    mask. Subclasses choose the field: optical flow or registration.
    """

    name = "warp"
    boxable = False                 # whether make_field takes a box (:func:`cineprop.flow.flow_box`)

    def __init__(self, field=None, anchor: bool = False, refine: bool = False, refiner: str | None = None,
                 refine_below: float = REFINE_BELOW, refine_step: float = REFINE_STEP, absent_above: float = 1.0,
                 absent_below_match: float = math.inf, absent_outward: bool = False, presence: str | None = None,
                 match_weight: float = 0.0, box: bool = False):
        """Args: field: a precomputed field of the same cine (a session reuses its own);
        anchor: carry by anchored carrying (:meth:`cineprop.flow.Field.anchored`) instead of
        warping the previous frame's carried mask; refine: correct each carried mask with the
        carrier refiner (:class:`cineprop.refine.Refiner`, checkpoint ``refiner``, ``None``: bundled),
        which needs ``anchor`` (it compares the query frame with the painted frame moved by the
        anchored displacement), on frames whose registration match is below ``refine_below``,
        taking ``refine_step`` of its correction (:meth:`cineprop.refine.Refiner.refine_crops`);
        absent_above: empty the carried mask on query frames where the presence check
        (:class:`cineprop.refine.Presence`, checkpoint ``presence``, ``None``: bundled) says the
        structure is absent with a probability above this (1: never), on the frames whose
        registration match is below ``absent_below_match`` (``inf``: any), and with ``absent_outward``
        only on frames out to the cine's end from the painted frames (:func:`outward_runs`); needs
        ``anchor``; match_weight: between two painted frames, weigh each chain also by its
        registration match to this power (:meth:`_chain_weight`; 0: by distance only); needs ``anchor``;
        box: compute the field only in a box around the painted masks (:func:`cineprop.flow.flow_box`;
        optical-flow carriers only; a given field keeps its own)."""
        if box:
            self.require_boxable("box=true")
        self.box = bool(box)
        self._field = field
        self.anchor = bool(anchor)
        if refine and not self.anchor:
            raise CinepropError(f"{self.name}: refine=true needs anchor=true (the refiner compares each frame with "
                                "the painted frame moved by the anchored displacement)")
        self.refiner = None
        if refine:
            from cineprop.refine import Refiner

            self.refiner = Refiner.load(refiner)
        self.refine_below = float(refine_below)
        self.refine_step = float(refine_step)
        if not 0.0 <= self.refine_step <= 1.0:
            raise CinepropError(f"{self.name}: refine_step must be in [0, 1], got {refine_step}")
        self.absent_above = float(absent_above)
        self.absent_below_match = float(absent_below_match)
        self.absent_outward = bool(absent_outward)
        self.match_weight = float(match_weight)
        if self.match_weight and not self.anchor:
            raise CinepropError(f"{self.name}: match_weight needs anchor=true (the registration match compares "
                                "each frame with the painted frame moved by the anchored displacement)")
        self.presence = None
        if self.absent_above < 1.0:
            from cineprop.refine import Presence

            if not self.anchor:
                raise CinepropError(f"{self.name}: absent_above < 1 needs anchor=true (the presence check compares "
                                    "each frame with the painted frame moved by the anchored displacement)")
            self.presence = Presence.load(presence)
        # with a given field (a session's): carried masks by (painted frame, mask hash, frame), so a
        # re-propagation warps again only the chains of new or changed paint
        self._carried: dict[tuple[int, int, int], np.ndarray] = {}
        self._kept_matches: dict[tuple[int, int, int], float] = {}     # (painted frame, frame, band hash)
        self._kept_absent: dict[tuple[int, int, int], float] = {}      # (painted frame, frame, mask hash)

    def field(self, frames: np.ndarray, support: SupportSet):
        """The cine's field object (``step(t, s)`` → ``H×W×2`` displacement; see :mod:`cineprop.flow`)."""
        if self._field is not None:
            return self._field
        return self.boxed_field(frames, flow_box(support.all_masks(), frames.shape[:2]) if self.box else None)

    @classmethod
    def require_boxable(cls, option: str) -> None:
        """The one rule of a box (``option`` names the caller's setting): only optical-flow carriers
        compute their field in a box."""
        if not cls.boxable:
            names = ", ".join(name for name, carrier in CARRIERS.items() if carrier.boxable)
            raise CinepropError(f"{option} needs an optical-flow carrier ({names}), not {cls.name!r}")

    def boxed_field(self, frames: np.ndarray, box: tuple[int, int, int, int] | None):
        """:meth:`make_field` computed only in ``box`` (:func:`cineprop.flow.flow_box`; optical-flow
        carriers only), or on the whole frame when ``box`` is ``None``."""
        return self.make_field(frames) if box is None else self.make_field(frames, box=box)

    def make_field(self, frames: np.ndarray):
        raise NotImplementedError

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        h, w, t = cine.shape
        field = self.field(cine.frames, support)
        hashes = {(label, f): hash(m.tobytes()) for label in support.labels for f, m in support.masks[label].items()}
        painted = set((f, digest) for (_, f), digest in hashes.items())
        self._carried = {k: v for k, v in self._carried.items() if k[:2] in painted}    # forget old paint
        probabilities, kept = {}, {}                            # kept: this run's registration matches
        confidence = np.zeros((len(support.labels), t), np.float32)
        for slot, label in enumerate(support.labels):
            frames = support.frames_of(label)
            masks = {f: m.astype(np.float32) for f, m in support.masks[label].items()}
            mask_hash = {f: hashes[label, f] for f in masks}
            forward = self._chain(field, masks, mask_hash, t, +1)
            backward = self._chain(field, masks, mask_hash, t, -1)
            prob = np.zeros((h, w, t), np.float32)
            for i in range(t):
                a, b = neighbours(frames, i)
                if a is not None and b is not None and a != b:
                    wa = self._chain_weight(field, (a, b, i), forward[i], backward[i], kept)
                    prob[:, :, i] = wa * forward[i] + (1 - wa) * backward[i]
                    confidence[slot, i] = dice(forward[i] > 0.5, backward[i] > 0.5)
                else:
                    prob[:, :, i] = forward[i] if a is not None else backward[i]
                    confidence[slot, i] = certainty(prob[:, :, i])
            probabilities[label] = prob
        details = {"match": self._matches(field, support, probabilities, kept)} if self.anchor else {}
        self._kept_matches = kept if self._field is not None else {}
        if self.presence is not None:
            details["absent"] = self._drop_absent(field, support, probabilities, details["match"])
        return finish(probabilities, confidence.mean(axis=0), support, time.perf_counter() - start, details)

    def _chain_weight(self, field, between: tuple[int, int, int], forward: np.ndarray, backward: np.ndarray,
                      kept: dict) -> float:
        """The weight of the forward chain (from painted frame ``a``) at frame ``i`` between painted
        frames ``a < i < b`` (``between``): by distance, ``(b − i)/(b − a)``, and with ``match_weight``
        ``k`` > 0 also by each chain's registration match with its painted frame, ``max(match, 0.01)^k``:
        the chain whose painted frame, moved onto frame ``i``, matches it better leads. A chain whose
        mask is (almost) empty has match 1 (:func:`registration_match`'s convention)."""
        a, b, i = between
        wa = (b - i) / (b - a)
        if self.match_weight == 0:
            return wa
        ma = max(self._match(field, a, i, forward, kept), 0.01) ** self.match_weight
        mb = max(self._match(field, b, i, backward, kept), 0.01) ** self.match_weight
        return wa * ma / (wa * ma + (1 - wa) * mb)

    def _match(self, field, painted: int, i: int, carried: np.ndarray, kept: dict) -> float:
        """:func:`registration_match` of frame ``i`` with ``painted`` around ``carried`` (``H×W``), kept
        in ``kept`` (and, with a given field, across runs) by painted frame, frame and band, so
        re-propagation recomputes only the frames whose band changed."""
        band = match_band(carried)
        key = (painted, i, hash(band.tobytes()))
        if key not in kept:
            kept[key] = (self._kept_matches[key] if key in self._kept_matches
                         else registration_match(field, painted, i, band))
        return kept[key]

    def _matches(self, field, support: SupportSet, probabilities: dict[int, np.ndarray],
                 kept: dict) -> dict[int, np.ndarray]:
        """Per label, the ``T`` :func:`registration_match` of each frame with its nearest painted frame
        (:meth:`_match`)."""
        out = {}
        for label in support.labels:
            frames, prob = support.frames_of(label), probabilities[label]
            out[label] = np.array([self._match(field, nearest(frames, i), i, prob[:, :, i], kept)
                                   for i in range(prob.shape[2])], np.float32)
        return out

    def _drop_absent(self, field, support: SupportSet, probabilities: dict[int, np.ndarray],
                     match: dict[int, np.ndarray]) -> dict[int, list[int]]:
        """Empty, in place, each label's mask on the query frames the presence check says its structure
        left (absent probability above ``absent_above``, judged against the nearest painted frame), among
        those whose registration ``match`` is below ``absent_below_match`` and, with ``absent_outward``,
        only runs of such frames that reach the cine's end (:func:`outward_runs`); return those frames
        by label. Their confidence stays that of the mask they had (the session's network–carrier agreement then
        flags them for review). Probabilities are kept, with a given field, by painted frame, frame and
        mask, so re-propagation judges only frames that changed."""
        out, kept = {}, {}
        for label in support.labels:
            frames, prob = support.frames_of(label), probabilities[label]
            t = prob.shape[2]
            judged = [i for i in range(t) if match[label][i] < self.absent_below_match and i not in frames]
            judged = outward_runs(judged, frames, t) if self.absent_outward else judged   # only what can empty
            keys = {i: (nearest(frames, i), i, hash(prob[:, :, i].tobytes())) for i in judged}
            todo = [key for key in keys.values() if key not in self._kept_absent and key not in kept]
            crops = [(field.frame(i), field.moved(painted, i), prob[:, :, i]) for painted, i, _ in todo]
            kept.update(zip(todo, self.presence.absent_probabilities(crops)))
            kept.update({key: self._kept_absent[key] for key in keys.values() if key in self._kept_absent})
            absent = [i for i, key in keys.items() if kept[key] > self.absent_above]
            out[label] = outward_runs(absent, frames, t) if self.absent_outward else absent
            prob[:, :, out[label]] = 0.0
        self._kept_absent = kept if self._field is not None else {}
        return out

    def _refine(self, field, carried: dict[tuple[int, int, int], np.ndarray]) -> None:
        """Correct, in place, the new carried masks (``(painted frame, mask hash, frame)`` → ``H×W``)
        with the refiner, in batches, except where the painted frame moved by the anchored displacement
        matches the frame around the mask (:func:`band_ncc` over :func:`match_band`) at ``refine_below``
        or more: registration explains the frame there."""
        todo = []
        for key, mask in carried.items():
            painted, _, i = key
            query, moved = field.frame(i), field.moved(painted, i)
            if self.refine_below >= 1.0 or band_ncc(query, moved, match_band(mask)) < self.refine_below:
                todo.append((key, (query, moved, mask)))
        refined = self.refiner.refine_crops([crop for _, crop in todo], self.refine_step)
        carried.update((key, mask) for (key, _), mask in zip(todo, refined))

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the carried masks kept for re-propagation."""
        return sum(m.nbytes for m in self._carried.values())

    def _chain(self, field, masks: dict[int, np.ndarray], mask_hash: dict[int, int], t: int,
               step: int) -> dict[int, np.ndarray]:
        """Carry each support mask (frame → ``H×W`` float, ``mask_hash`` of each) in direction
        ``step`` until the next support frame (exclusive)."""
        out: dict[int, np.ndarray] = {}
        kept = self._carried if self._field is not None else {}      # a one-off field: nothing to reuse
        order = range(t) if step > 0 else range(t - 1, -1, -1)
        painted, new = None, {}
        for i in order:
            if i in masks:
                painted = i
                out[i] = masks[i]
            elif painted is not None:
                key = (painted, mask_hash[painted], i)
                if key not in kept:
                    new[key] = (anchored_carry(field, masks[painted], painted, i) if self.anchor
                                else warp(out[i - step], field.step(i, i - step)))
                out[i] = kept.get(key, new.get(key))
        if self.refiner is not None and new:       # anchored: each frame's mask is independent of the others'
            self._refine(field, new)
        kept.update(new)
        for key in new:
            out[key[2]] = new[key]
        return out


class FlowPropagator(WarpPropagator):
    """``flow``: Farnebäck dense optical flow between consecutive frames (:mod:`cineprop.flow`)."""

    name = "flow"
    flow_method = "farneback"
    boxable = True

    def make_field(self, frames: np.ndarray, box: tuple[int, int, int, int] | None = None) -> FlowField:
        return FlowField(frames, self.flow_method, box)


class DisPropagator(FlowPropagator):
    """``dis``: OpenCV DIS optical flow (MEDIUM preset) between consecutive frames."""

    name = "dis"
    flow_method = "dis"


class DisFinePropagator(FlowPropagator):
    """``dis_fine``: DIS down to full resolution (:data:`cineprop.flow.DIS_SETTINGS`), slower and
    more accurate on long chains than ``dis``."""

    name = "dis_fine"
    flow_method = "dis_fine"


class DemonsPropagator(WarpPropagator):
    """``demons``: SimpleITK fast symmetric-forces demons registration frame to frame."""

    name = "demons"

    def __init__(self, field=None, iterations: int = 50, **options):
        """``options``: :class:`WarpPropagator`'s."""
        super().__init__(field, **options)
        self.iterations = int(iterations)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import DemonsField

        return DemonsField(frames, self.iterations)


class SynPropagator(WarpPropagator):
    """``syn``: ANTs SyN registration frame to frame (``antspyx``, optional ``peers`` extra)."""

    name = "syn"

    def __init__(self, field=None, **options):
        """``options``: :class:`WarpPropagator`'s."""
        from cineprop.registration import require_ants

        require_ants(self.name)                         # fail when built, not on the first cine
        super().__init__(field, **options)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import SynField

        return SynField(frames)


class ElastixPropagator(WarpPropagator):
    """``elastix``: elastix B-spline registration frame to frame (``itk-elastix``, optional ``peers`` extra)."""

    name = "elastix"

    def __init__(self, field=None, **options):
        """``options``: :class:`WarpPropagator`'s."""
        from cineprop.registration import require

        require("itk", "itk-elastix", self.name)
        super().__init__(field, **options)

    def make_field(self, frames: np.ndarray):
        from cineprop.registration import ElastixField

        return ElastixField(frames)


#: Field-based methods by name: what a model session may blend with (``SessionConfig.flow_method``).
CARRIERS: dict[str, type[WarpPropagator]] = {
    cls.name: cls for cls in (FlowPropagator, DisPropagator, DisFinePropagator, DemonsPropagator, SynPropagator,
                               ElastixPropagator)}
