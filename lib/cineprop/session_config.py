"""Inference settings of a :class:`~cineprop.session.PropagationSession` (re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cineprop.options import replace_from_strings

#: the carrier refiner corrects only frames whose registration match is below this (``refine_below``
#: of the session and of every carrier; chosen on the tuning sets, docs/benchmarks.md
#: "Registration-guided refinement")
REFINE_BELOW = 0.9
#: the share of the refiner's correction the carrier takes (``refine_step``: the carried logit plus this
#: × the refiner's residual); chosen on ACDC val with refiners that never saw the structure or the
#: modality, docs/benchmarks.md "The carrier refiner at half step"
REFINE_STEP = 0.5


@dataclass(frozen=True)
class SessionConfig:
    """Inference settings (the defaults are the ones the benchmarks use).

    Attributes:
        memory: feed confident predictions back as memory.
        memory_threshold: confidence a prediction needs to be written to memory.
        temporal_scale: shot weight ``exp(−distance / temporal_scale)`` (frames).
        max_shots: painted frames used per query frame (the nearest ones behind it).
        use_roi: process a square around the painted masks instead of the whole frame.
        roi_margin, roi_min_side: ROI growth (× box side, each edge) and minimum side (pixels).
        batch_frames: frames per backbone batch.
        max_cached_frames: feature cache size (≈0.7 MB per frame at R=128).
        flag_threshold: frames below this confidence are flagged for review.
        support_weight_floor: lowest weight of a painted frame's shot (see :func:`shot_weight`).
        shot_cutoff: a painted frame whose shot weight is below this fraction of the nearest painted
            frame's is not a shot (:func:`cineprop.shots.useful_shots`). At 0.01 (a painted frame 14
            or more frames farther than the nearest, at ``temporal_scale`` 3) no label's Dice changed
            on the smooth-motion tuning set with 3 shots (frames 0, 30, 59), and a correction stays
            local: re-propagation decodes only the frames near the new paint (docs/benchmarks.md).
        bridge: a frame between two painted frames is decoded once more with both of them as its shots
            (weighted by :func:`cineprop.shots.shot_weight`, no memory), and that *bridge* replaces the two
            sweeps' distance blend; the sweeps' disagreement still bounds its certainty. The network
            alone with 3 painted frames (first frame, ``flow_weight=0``) scored 0.713 → 0.750 on ACDC val
            (shot weights by distance as the sweeps: 0.750; linear 0.746; equal 0.749; the bridge averaged
            with the sweeps 0.746), 0.696 → 0.742 on test (docs/benchmarks.md, "Between painted frames:
            one decode with both").
        memory_needs_object: never write an empty prediction to memory. An empty map is "certain",
            but as a shot it carries nothing and dilutes the painted frames' masks, so after one
            dropout frame the object would be lost for the rest of the clip.
        flow_weight: weight of the flow-carried masks in the final probabilities (0: model only).
            0.9: the carried masks lead and the network decides only where the carrier is unsure
            (carried probability near 0.5); chosen by the smallest gain over the carrier alone across
            the two tuning sets (`tools/tune_flow_blend.py`, docs/benchmarks.md): on 20 ACDC val cines
            0.5 → 0.686, 0.65 → 0.697, 0.8 → 0.697, 0.9 → 0.696, DIS alone 0.694; on the val-derived
            smooth-motion tuning set 0.5 → 0.792, 0.8 → 0.924, 0.9 → 0.928, DIS alone 0.927 (at 0.5 a
            network that is confidently wrong ties the carrier and flips the pixel; that drift cost
            0.13 Dice on smooth motion). Only 0.9 is at or above the carrier alone on both.
        flow_method: the method that carries the painted masks for the blend: ``flow`` (Farnebäck),
            ``dis``, ``dis_fine``, ``demons``, ``syn`` or ``elastix`` (:data:`cineprop.baselines.CARRIERS`).
            ``dis``: on the 20 ACDC val cines (first frame, weight 0.5) the blend scored 0.686 against
            0.655 with Farnebäck and 0.615 with demons, better on 16 cines, worse on 2
            (docs/benchmarks.md). ``dis_fine`` (full-resolution DIS) is the accurate mode: +0.012 on
            val and the smooth tuning set with first-frame support, none with short chains, half the
            speed ("A finer DIS carrier").
        flow_box: the carrier computes its optical flow only in a box around the painted masks
            (:func:`cineprop.flow.flow_box`; ``flow``, ``dis``, ``dis_fine``); the field is rebuilt when
            a new painted frame moves the box.
        anchor_carrier: the carrier carries by anchored carrying (:meth:`cineprop.flow.Field.anchored`:
            every frame's displacement checked against the painted frame), which stops the drift of
            frame-by-frame warping on long cines (docs/benchmarks.md, "Anchored carrying").
        refine_carrier: the carrier corrects each carried mask with the carrier refiner
            (registration-guided refinement, :mod:`cineprop.refine`; needs ``anchor_carrier``), taking
            ``refine_step`` of its correction. On by default since the half step: on ACDC val (first
            frame) the default gained 0.012 / 0.023 / 0.040 / 0.049 at steps 0.25 / 0.5 / 0.75 / 1, while a
            refiner trained without the LV changed the LV by −0.002 / −0.001 / −0.003 / −0.005 and one
            trained without ACDC changed ACDC by +0.002 / +0.001 / −0.005 / −0.013 (DIS anchored); the
            smooth-motion tuning set 0.9707 → 0.9709 at 0.5, 0.9696 at 1. 0.5 has the largest smallest
            change (docs/benchmarks.md, "The carrier refiner at half step").
        refiner: the refiner checkpoint for ``refine_carrier`` (``None``: the bundled one).
        refine_below: refine only frames whose registration match is below this (1: every frame).
        refine_step: the share of the refiner's correction taken (:data:`REFINE_STEP`; 1: all of it).
        absent_above: the carrier empties a query frame's mask where the presence check says the
            structure left the frame with a probability above this (1: never;
            :mod:`cineprop.model.presence`), within the two limits below. On (0.7) since 2026-12-03
            with both limits; alone it was off, because a check that never saw the myocardium (a
            ring) empties present myocardium (−0.067 on ACDC val, −0.091 on test, session, first frame).
        absent_below_match: the presence check empties only frames whose registration match with the
            painted frame (:func:`cineprop.flow.registration_match`) is below this (0.6; ``inf``:
            any frame): where the moved painted frame still matches, the structure is taken to be there.
        absent_outward: the presence check empties only runs of frames it judges absent that reach the
            cine's end beyond the painted frames (:func:`cineprop.support.outward_runs`): a structure
            that leaves a slice stack does not come back, so a frame between painted frames, or with a
            frame judged present farther out, keeps its mask. With 0.7 and 0.6 (the opt-in values
            chosen on ACDC val earlier) the default gains 0.0165 on ACDC val and 0.014 on test (first frame), and
            each check trained with one ACDC structure held out changes its structure by +0.009 /
            +0.026 / +0.011 on val (LV / RV / myocardium) and −0.004 / +0.014 / +0.002 on test;
            the smooth-motion tuning set is unchanged (``tools/tune_presence.py --outward``;
            docs/benchmarks.md, "The presence check, only outward").
        presence: the presence checkpoint for ``absent_above`` (``None``: the bundled one).
        match_weight: between two painted frames the carrier blends the chain carried from each by
            distance and, to this power, by each chain's registration match with its painted frame
            (:meth:`cineprop.baselines.WarpPropagator._chain_weight`; 0: by distance only). 4: with 3
            painted frames the default scores 0.7996 / 0.8073 / 0.8087 / 0.8113 / 0.8105 on ACDC val
            at 0 / 1 / 2 / 4 / 8 and 0.97265 / 0.97274 / 0.97279 / 0.97299 / 0.97318 on the
            smooth-motion tuning set: the largest gain on val among values that lose nothing on the
            smooth set (the rule that chose ``absent_above`` first; docs/benchmarks.md, "Between
            painted frames: the chain that matches leads").
    """

    memory: bool = True
    memory_threshold: float = 0.6
    temporal_scale: float = 3.0
    max_shots: int = 3
    use_roi: bool = True
    roi_margin: float = 0.75
    roi_min_side: int = 64
    batch_frames: int = 16
    max_cached_frames: int = 600
    flag_threshold: float = 0.5
    support_weight_floor: float = 0.0
    shot_cutoff: float = 0.01
    memory_needs_object: bool = True
    bridge: bool = True
    flow_weight: float = 0.9
    flow_method: str = "dis"
    flow_box: bool = False
    anchor_carrier: bool = True
    refine_carrier: bool = True
    refiner: str | None = None
    refine_below: float = REFINE_BELOW
    refine_step: float = REFINE_STEP
    absent_above: float = 0.7
    absent_below_match: float = 0.6
    absent_outward: bool = True
    presence: str | None = None
    match_weight: float = 4.0

    def carrier_options(self) -> dict[str, Any]:
        """The keyword arguments of the session's carrier (:class:`cineprop.baselines.WarpPropagator`):
        anchoring, refinement and the presence check as set here."""
        return {"anchor": self.anchor_carrier, "refine": self.refine_carrier, "refiner": self.refiner,
                "refine_below": self.refine_below, "refine_step": self.refine_step,
                "absent_above": self.absent_above, "absent_below_match": self.absent_below_match,
                "absent_outward": self.absent_outward, "presence": self.presence,
                "match_weight": self.match_weight, "box": self.flow_box}

    def with_options(self, options: Mapping[str, Any]) -> "SessionConfig":
        """A copy with ``options`` applied, strings (``"0.3"``, ``"false"``) converted (:mod:`cineprop.options`)."""
        return replace_from_strings(self, options, "session")
