"""Propagation methods of the video phase.

* ``relearn`` (:class:`RelearnPropagator`): per-cine test-time relearning — stage 1 with the image
  model, relearn a copy on this cine, predict with the relearned two-stage forward; a collapse
  guard reverts labels whose prediction collapsed to the image model's.
* ``model`` with a ``relearn`` checkpoint (:class:`TwoStagePropagator`, chosen by the checkpoint's
  kind in :func:`cineprop.methods.learned_propagator`): the two-stage forward of a
  collection-relearned :class:`~cineprop.model.VideoSegmenter`, no optimisation per cine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cineprop.checkpoints import image_model_of, load_model
from cineprop.io.cine import Cine
from cineprop.methods import ModelOptions
from cineprop.metrics import dice
from cineprop.model import FewShotSegmenter, VideoSegmenter
from cineprop.propagation import Propagation, finish
from cineprop.relearn.clip_from_stage1 import build_clip, run_stage1
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.relearner import ConsistencyRelearner
from cineprop.relearn.two_stage import ClipEncoder, VideoClip, predict
from cineprop.session import PropagationSession, SessionConfig
from cineprop.session_carrier import blend_with_flow
from cineprop.support import SupportSet
from cineprop.threads import configure_threads


def collapse_check(stage1: torch.Tensor, relearned: torch.Tensor, query: np.ndarray, config: RelearnConfig,
                   support_before: dict[int, float] | None = None, support_after: dict[int, float] | None = None
                   ) -> dict[int, str]:
    """Slots whose relearned prediction collapsed, with the reason (see the ``guard_*`` config fields).

    Args:
        stage1, relearned: ``L×T×R×R`` foreground probabilities.
        query: ``L×T`` bool, the frames that are predicted (not painted) per slot.
        support_before, support_after: per slot, Dice of the painted frames predicted without
            themselves by the image and the relearned model (:meth:`ConsistencyRelearner.support_dice`).
    """
    out = {}
    for slot in range(stage1.shape[0]):
        frames = torch.from_numpy(np.flatnonzero(query[slot]))
        if frames.numel() == 0:
            continue
        a, b = stage1[slot, frames] > 0.5, relearned[slot, frames] > 0.5
        ratio = (float(b.sum()) + 1.0) / (float(a.sum()) + 1.0)
        agreement = dice(a, b)
        if ratio > config.guard_area_ratio or ratio < 1.0 / config.guard_area_ratio:
            out[slot] = f"area changed x{ratio:.2f} against the image model"
        elif agreement < config.guard_dice:
            out[slot] = f"Dice {agreement:.2f} against the image model"
        elif support_before and support_after and slot in support_before and \
                support_after[slot] < support_before[slot] - config.guard_support_drop:
            out[slot] = (f"painted frames predicted without themselves: Dice {support_after[slot]:.2f} "
                         f"(image model {support_before[slot]:.2f})")
    return out


def finish_two_stage(clip: VideoClip, probs: torch.Tensor, support: SupportSet, reverted: dict[int, str],
                     seconds: float, details: dict[str, Any], flag_threshold: float,
                     session: PropagationSession | None = None) -> Propagation:
    """Paste stage-2 probabilities back into the frame; reverted slots keep stage 1.

    A frame's confidence is the lowest, over labels, of stage 1's confidence and the agreement
    (Dice) between the stage-1 and the final prediction at that frame. With the stage-1
    ``session``'s ``flow_weight`` > 0, stage 2 is blended with the flow-carried masks as stage 1 was.
    """
    stage1 = clip.stage1_result
    h, w, t = clip.shape
    probs_np = probs.cpu().numpy()
    stage1_np = clip.stage1.cpu().numpy()
    probabilities, confidence = {}, np.array(stage1.confidence, np.float32)
    for slot, label in enumerate(clip.labels):
        if slot in reverted:
            probabilities[label] = stage1.probabilities[label]
            continue
        full = np.zeros((h, w, t), np.float32)
        for i in range(t):
            full[:, :, i] = clip.roi.paste(probs_np[slot, i], (h, w))
            confidence[i] = min(confidence[i], dice(stage1_np[slot, i] > 0.5, probs_np[slot, i] > 0.5))
        if session is not None and session.config.flow_weight > 0:
            carried = session.flow_carried(support).probabilities[label]
            full, agreement = blend_with_flow(full, carried, session.config.flow_weight)
            np.minimum(confidence, agreement, out=confidence)
        probabilities[label] = full
    details = dict(stage1.details, **details)
    return finish(probabilities, confidence, support, seconds, details, flag_threshold)


class TwoStagePropagator:
    """Two-stage inference with a relearned video model; see the module docstring.

    Args:
        model: the relearned video model (eval mode, on ``device``).
        payload: its ``relearn`` checkpoint dict (stage 1's image weights, the relearning recipe).
        device: torch device string.
        session_config: stage 1's session settings.
    """

    name = "model"

    def __init__(self, model: VideoSegmenter, payload: dict, device: str = "cpu",
                 session_config: SessionConfig = SessionConfig()):
        self.device, self.model, self.payload = device, model, payload
        self.stage1: FewShotSegmenter = image_model_of(model, payload)[0]
        self.session_config = session_config
        recipe = (payload.get("meta") or {}).get("relearn_config")
        self.config = RelearnConfig.from_dict(recipe) if recipe else RelearnConfig()

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        start = time.perf_counter()
        session, stage1 = run_stage1(self.stage1, cine, support, self.session_config, self.device)
        clip = build_clip(session, stage1, self.config, training=False)
        probs, _ = predict(self.model, clip)
        return finish_two_stage(clip, probs, support, {}, time.perf_counter() - start, {"two_stage": True},
                                self.session_config.flag_threshold, session)


@dataclass(frozen=True)
class RelearnOptions(ModelOptions):
    """``--method relearn``: the image checkpoint, stage 1's session settings, the relearning recipe.

    Set by name like every method's options (:func:`cineprop.methods.method_options`): ``checkpoint``,
    ``device``, any :class:`SessionConfig` field (stage 1) and any :class:`RelearnConfig` field
    (``steps``, ``seed``, ``lambda_w``, ``train=tau,head``, ...).

    Attributes:
        relearn: the relearning recipe.
        progress: show the relearning progress bar.
    """

    relearn: RelearnConfig = RelearnConfig()
    progress: bool = False


class RelearnPropagator:
    """``--method relearn``: relearn a copy of the image model on each cine, then predict with it.

    Args (the fields of :class:`RelearnOptions`):
        checkpoint: image (or relearned) checkpoint; default the bundled image model.
        device: torch device (default cpu).
        session: stage 1's session settings.
        relearn: the relearning recipe.
        progress: show the relearning progress bar.
    """

    name = "relearn"

    def __init__(self, checkpoint: str | None = None, device: str | None = None,
                 session: SessionConfig = SessionConfig(), relearn: RelearnConfig = RelearnConfig(),
                 progress: bool = False):
        self.device = device or "cpu"
        configure_threads(self.device)
        #: the teacher: the checkpoint's model (of a ``relearn`` checkpoint, its relearned video model)
        self.model, self.payload = load_model(checkpoint, self.device)
        self.stage1: FewShotSegmenter = image_model_of(self.model, self.payload, checkpoint)[0]
        self.session_config, self.config = session, relearn
        self.progress = progress
        self.last_result = None

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        cfg = self.config
        start = time.perf_counter()
        session, stage1 = run_stage1(self.stage1, cine, support, self.session_config, self.device)
        clip = build_clip(session, stage1, cfg, training=True)
        relearner = ConsistencyRelearner(self.model, cfg, self.progress)
        state = relearner.prepare(clip)
        result = relearner.adapt(state)
        encoder = state.encoder if cfg.backbone_frozen else ClipEncoder(result.student, clip, cache=False)
        probs, _ = predict(result.student, clip, encoder)
        query = np.ones((len(clip.labels), clip.num_frames), bool)
        for slot, frames in clip.painted.items():
            query[slot, list(frames)] = False
        before, after = relearner.support_dice(self.model, state), relearner.support_dice(result.student, state)
        reverted = collapse_check(clip.stage1, probs, query, cfg, before, after)
        losses = result.history
        details = {"relearn": {
            "steps": result.steps, "stopped_early": result.stopped_early, "seconds": round(result.seconds, 3),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "support_dice": {str(clip.labels[s]): [round(before[s], 4), round(after.get(s, float("nan")), 4)]
                             for s in before},
            "reverted": {str(clip.labels[s]): why for s, why in reverted.items()}}}
        self.last_result = result
        return finish_two_stage(clip, probs, support, reverted, time.perf_counter() - start, details,
                                self.session_config.flag_threshold, session)
