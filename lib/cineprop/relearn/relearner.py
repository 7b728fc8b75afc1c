"""Spatiotemporal consistency relearning: ``ConsistencyRelearner(model, config).adapt(clip)``.

The caller's (image) model is the frozen *teacher*: it is never modified. Relearning trains a
*student* — a :class:`~cineprop.model.VideoSegmenter` made from a copy of it — on an explicit parameter
subset (``config.train``), with the stage-2 forward of :mod:`cineprop.relearn.two_stage`; the
teacher's stage-2 outputs (features ``F*`` entering the head, predictions ``P*``) are the
consistency targets. Each step draws a window of ``config.window_frames`` consecutive frames (all
labels), plus the painted frames predicted without themselves and a few deformed copies of them.
Deterministic for a given seed; stops early when the smoothed loss plateaus.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from cineprop.flow import FlowField
from cineprop.metrics import dice
from cineprop.model import FewShotSegmenter, VideoSegmenter
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.losses import (feature_loss, prediction_loss, pseudo_supervision_loss, temporal_loss,
                                     warp_loss)
from cineprop.relearn.two_stage import ClipEncoder, Item, VideoClip, predict, warp_grid
from cineprop.training.losses import segmentation_loss
from cineprop.training.optim import optimiser_step


class ClipState:
    """Per-clip constants of relearning: the teacher's encoder and targets, flows (all cached)."""

    def __init__(self, clip: VideoClip, teacher: FewShotSegmenter):
        self.clip = clip
        self.teacher = teacher
        self.encoder = ClipEncoder(teacher, clip, cache=True)
        with torch.no_grad():
            self.target_probs, self.target_features = predict(teacher, clip, self.encoder)  # L×T×R×R, L×T×C×h×w
        self._fused: dict[Item, torch.Tensor] = {}
        self._flows: FlowField | None = None
        self._pairs: dict[int, tuple[torch.Tensor, ...]] = {}

    @torch.no_grad()
    def fused(self, items: list[Item]) -> torch.Tensor:
        """The teacher's fused features (before any TAU) of ``items``: ``B×C×h×w``."""
        todo = [it for it in dict.fromkeys(items) if it not in self._fused]
        if todo:
            out = self.encoder.inputs(todo).fuse(self.teacher)
            self._fused.update({it: out[n] for n, it in enumerate(todo)})
        return torch.stack([self._fused[it] for it in items])

    def flow_pairs(self, start: int, stop: int) -> list[tuple[torch.Tensor, ...]]:
        """Warp grids and forward-backward validity for the frame pairs ``(i, i+1)``, ``start ≤ i < stop − 1``."""
        if self._flows is None:
            t = self.clip.num_frames
            self._flows = FlowField(self.clip.bank[:t, 0].permute(1, 2, 0).cpu().numpy())
        out = []
        for i in range(start, stop - 1):
            if i not in self._pairs:
                ff = self._flows
                device = self.clip.bank.device

                def valid(a: int, b: int) -> torch.Tensor:
                    return torch.from_numpy(ff.consistency(a, b).astype(np.float32)).to(device)

                self._pairs[i] = (warp_grid(ff.step(i + 1, i)).to(device), valid(i + 1, i),
                                  warp_grid(ff.step(i, i + 1)).to(device), valid(i, i + 1))
            out.append(self._pairs[i])
        return out


@dataclass
class RelearnResult:
    """What :meth:`ConsistencyRelearner.adapt` returns.

    Attributes:
        student: the relearned video model (eval mode).
        history: per step, the unweighted loss terms and the weighted ``total``.
        steps: steps taken; stopped_early: whether the plateau rule stopped it.
        seconds: wall time of the optimisation (preparation excluded).
    """

    student: VideoSegmenter
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def parameter_groups(model: VideoSegmenter) -> dict[str, list[torch.nn.Parameter]]:
    """``{"tau", "fusion", "head", "backbone"}`` → parameters."""
    return {"tau": list(model.tau.parameters()), "fusion": list(model.fusion.parameters()),
            "head": list(model.head.parameters()), "backbone": list(model.backbone.parameters())}


@contextmanager
def trainable(model: VideoSegmenter, groups: tuple[str, ...]) -> Iterator[list[torch.nn.Parameter]]:
    """Make exactly ``groups`` of ``model`` require gradients; restore every flag on exit."""
    before = {p: p.requires_grad for p in model.parameters()}
    chosen = parameter_groups(model)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        params = [p for g in groups for p in chosen[g]]
        for p in params:
            p.requires_grad_(True)
        yield params
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)


class ConsistencyRelearner:
    """Relearn a copy of ``model`` on one clip (or, step by step, on many; see :mod:`.collection`)."""

    def __init__(self, model: FewShotSegmenter, config: RelearnConfig = RelearnConfig(), progress: bool = False):
        self.teacher = model.eval()
        self.config = config
        self.progress = progress

    def new_student(self) -> VideoSegmenter:
        """The teacher's weights in a video model (TAU seeded), in eval mode (batch norm statistics frozen)."""
        return VideoSegmenter.from_image(self.teacher, seed=self.config.seed).eval()

    def prepare(self, clip: VideoClip) -> ClipState:
        return ClipState(clip, self.teacher)

    # ---- one step -------------------------------------------------------------------------------
    def _fused(self, student: VideoSegmenter, state: ClipState, items: list[Item]) -> torch.Tensor:
        cfg = self.config
        if cfg.fused_frozen:
            return state.fused(items)
        if cfg.backbone_frozen:
            return state.encoder.inputs(items).fuse(student)
        return ClipEncoder(student, state.clip, cache=False).inputs(items).fuse(student)

    def weights(self) -> dict[str, float]:
        """``λ`` of each loss term by its key (``t``, ``f``, ``p``, ``s``, ``w``, ``tps``)."""
        cfg = self.config
        return {"t": cfg.lambda_t, "f": cfg.lambda_f, "p": cfg.lambda_p, "s": cfg.lambda_s, "w": cfg.lambda_w,
                "tps": cfg.lambda_tps}

    def step(self, student: VideoSegmenter, state: ClipState, rng: np.random.Generator
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """One relearning step's weighted loss and its unweighted terms (see the module docstring)."""
        terms, weights = self.loss_terms(student, state, rng), self.weights()
        total = sum(weights[k] * v for k, v in terms.items())
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        return total, values

    def loss_terms(self, student: VideoSegmenter, state: ClipState, rng: np.random.Generator
                   ) -> dict[str, torch.Tensor]:
        """The unweighted loss terms of one step (a random window of frames), each a scalar with its graph."""
        cfg, clip = self.config, state.clip
        num_labels, t = len(clip.labels), clip.num_frames
        n = min(cfg.window_frames, t)
        start = int(rng.integers(0, t - n + 1))
        stop = start + n
        w = student.temporal_window
        lo, hi = max(0, start - w), min(t, stop + w)
        items = [clip.grid[s][i] for s in range(num_labels) for i in range(lo, hi)]
        fused = self._fused(student, state, items)
        fused = fused.view(num_labels, hi - lo, *fused.shape[1:])
        out = student.temporal_attend(fused)[:, start - lo:stop - lo]
        logits = student.decode(out.flatten(0, 1))
        probs = torch.softmax(logits, 1)[:, 1].view(num_labels, n, *logits.shape[-2:])
        terms: dict[str, torch.Tensor] = {}
        if cfg.lambda_t:
            terms["t"] = temporal_loss(out)
        if cfg.lambda_f:
            terms["f"] = feature_loss(out, state.target_features[:, start:stop])
        if cfg.lambda_p:
            terms["p"] = prediction_loss(probs, state.target_probs[:, start:stop])
        if cfg.lambda_w and n > 1:
            terms["w"] = warp_loss(probs, state.flow_pairs(start, stop))
        if cfg.lambda_s and (clip.exclusive or clip.copies):
            terms["s"] = self._supervised(student, state, rng)
        if cfg.lambda_tps and clip.augmented is not None:
            aug = [Item(it.slot, clip.augmented + it.query, it.supports, it.memory) for it in items]
            fused_aug = self._fused(student, state, aug).view_as(fused)
            out_aug = student.temporal_attend(fused_aug)[:, start - lo:stop - lo]
            terms["tps"] = pseudo_supervision_loss(student.decode(out_aug.flatten(0, 1)), probs.flatten(0, 1),
                                                   cfg.tps_confidence)
        return terms

    def _supervised(self, student: VideoSegmenter, state: ClipState, rng: np.random.Generator) -> torch.Tensor:
        """``L_s`` on the painted frames predicted without themselves and on deformed copies of them."""
        clip, w = state.clip, student.temporal_window
        logits, targets = [], []
        if clip.exclusive:
            items = [it for it, _ in clip.exclusive]
            own = self._fused(student, state, items)                      # B×C×h×w
            seq, valid = self._context(state, items, own, w)
            logits.append(student.decode(student.temporal_attend(seq, valid)[:, w]))
            targets.extend(m for _, m in clip.exclusive)
        if clip.copies and self.config.copies_per_step:
            pick = rng.choice(len(clip.copies), size=min(self.config.copies_per_step, len(clip.copies)), replace=False)
            chosen = [clip.copies[int(i)] for i in sorted(pick)]
            fused = self._fused(student, state, [it for it, _ in chosen])
            logits.append(student.decode(student.temporal_attend(fused[:, None])[:, 0]))
            targets.extend(m for _, m in chosen)
        return segmentation_loss(torch.cat(logits), torch.stack(targets), per_image=True)

    @staticmethod
    def _context(state: ClipState, items: list[Item], own: torch.Tensor, w: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``B×(2w+1)×C×h×w`` sequences: the teacher's fused features of the neighbours, ``own`` at the centre."""
        clip, t = state.clip, state.clip.num_frames
        rows, valid = [], []
        for b, it in enumerate(items):
            frames = [it.query + o for o in range(-w, w + 1)]
            inside = [0 <= f < t and o != 0 for o, f in zip(range(-w, w + 1), frames)]
            around = [clip.grid[it.slot][f] for f, ok in zip(frames, inside) if ok]
            neighbours = state.fused(around) if around else []
            row, k = [], 0
            for o, ok in zip(range(-w, w + 1), inside):
                if o == 0:
                    row.append(own[b])
                elif ok:
                    row.append(neighbours[k])
                    k += 1
                else:
                    row.append(torch.zeros_like(own[b]))
            rows.append(torch.stack(row))
            valid.append([ok or o == 0 for o, ok in zip(range(-w, w + 1), inside)])
        return torch.stack(rows), torch.tensor(valid, device=own.device)

    @torch.no_grad()
    def support_dice(self, model: FewShotSegmenter, state: ClipState) -> dict[int, float]:
        """Per slot, mean Dice of the painted frames predicted *without* themselves by ``model``."""
        clip = state.clip
        if not clip.exclusive:
            return {}
        items = [it for it, _ in clip.exclusive]
        shared = model is self.teacher or self.config.backbone_frozen
        encoder = state.encoder if shared else ClipEncoder(model, clip, cache=False)
        w = model.temporal_window
        seq, valid = self._context(state, items, encoder.inputs(items).fuse(model), w)
        probs = torch.softmax(model.decode(model.temporal_attend(seq, valid)[:, w]), 1)[:, 1]
        scores: dict[int, list[float]] = {}
        for (it, target), p in zip(clip.exclusive, probs):
            scores.setdefault(it.slot, []).append(dice(p > 0.5, target > 0.5))
        return {slot: float(np.mean(v)) for slot, v in scores.items()}

    # ---- the loop -------------------------------------------------------------------------------
    def adapt(self, clip: VideoClip | ClipState, steps: int | None = None,
              student: VideoSegmenter | None = None) -> RelearnResult:
        """Relearn on one clip; returns the student (the teacher is left untouched)."""
        cfg = self.config
        state = clip if isinstance(clip, ClipState) else self.prepare(clip)
        steps = cfg.steps if steps is None else int(steps)
        student = student if student is not None else self.new_student()
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        result = RelearnResult(student)
        start = time.perf_counter()
        with trainable(student, cfg.train) as params:
            optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            stopper = Plateau(cfg.patience, cfg.tolerance)
            bar = tqdm(total=steps, desc=f"relearn {state.clip.name}", disable=not self.progress or steps == 0,
                       leave=False, dynamic_ncols=True)
            for _ in range(steps):
                loss, terms = self.step(student, state, rng)
                optimiser_step(optimiser, loss, params)
                result.history.append(terms)
                result.steps += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
                if stopper.update(terms["total"]):
                    result.stopped_early = True
                    break
            bar.close()
        result.seconds = time.perf_counter() - start
        return result

    @contextmanager
    def adapted(self, clip: VideoClip | ClipState, steps: int | None = None) -> Iterator[RelearnResult]:
        """``with relearner.adapted(clip) as result:`` use ``result.student``; it is released on exit."""
        result = self.adapt(clip, steps)
        try:
            yield result
        finally:
            result.student = None  # type: ignore[assignment]


class Plateau:
    """Early stopping: an exponential moving average of the loss that stopped falling.

    ``update(loss)`` returns ``True`` once the average has not improved on its best by more than
    ``tolerance`` (relative) for ``patience`` consecutive steps (``patience = 0`` never stops).
    """

    def __init__(self, patience: int, tolerance: float, smoothing: float = 0.7):
        self.patience, self.tolerance, self.smoothing = patience, tolerance, smoothing
        self.average: float | None = None
        self.best = float("inf")
        self.since = 0

    def update(self, loss: float) -> bool:
        self.average = loss if self.average is None else self.smoothing * self.average + (1 - self.smoothing) * loss
        if self.average < self.best * (1 - self.tolerance):
            self.best, self.since = self.average, 0
        else:
            self.since += 1
        return bool(self.patience) and self.since >= self.patience
