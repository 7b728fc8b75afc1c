"""Two-stage ("parallel") video inference: the forward pass that relearning trains.

The Temporal Attention Unit needs the fused features of a frame's neighbours, which the
sequential session cannot give. So a cine is segmented in two stages:

1. **Stage 1** — the image model's :class:`~cineprop.session.PropagationSession` (sweeps with
   confidence-gated memory) gives ``P_img`` and a per-frame confidence.
2. **Stage 2** — every frame at once. For query frame ``t`` and label ``l`` the shots are the
   nearest painted frames of ``l`` (up to ``max_shots``, weights ``exp(−|d|/scale)`` as in the
   session) plus a *memory* shot: the adjacent frame toward the nearest painted frame with its
   stage-1 prediction as a feature mask. Fused features of all frames (batched) → TAU over
   ``±tau_window`` frames → head.

A painted frame is predicted from itself in the inference grid (its fused features are context
for its neighbours); for the supervised loss it is also predicted *without* itself
(``exclusive`` items). Everything is at the ROI resolution ``R`` of stage 1.

Shapes: ``L`` labels, ``T`` frames, ``N`` images in the clip's bank (the ``T`` frames first, then
deformed copies and augmented views), ``C×h×w`` fused features (``h = w = R/2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cineprop.model import FewShotSegmenter, SupportEncoding
from cineprop.propagation import Propagation
from cineprop.roi import Roi
from cineprop.shots import TEMPORAL_SCALE, shot_weight, useful_shots
from cineprop.support import nearest_first


@dataclass(frozen=True)
class Item:
    """One (label, query image) to segment in stage 2.

    Attributes:
        slot: index into ``VideoClip.labels``.
        query: bank index of the query image.
        supports: ``(painted frame, weight)`` image-masked shots.
        memory: ``(bank index, weight)`` of a feature-masked shot (mask in ``VideoClip.memory_masks``).
    """

    slot: int
    query: int
    supports: tuple[tuple[int, float], ...]
    memory: tuple[int, float] | None = None


def plan_item(slot: int, painted: Sequence[int], frame_idx: int, num_frames: int, max_shots: int = 3,
              temporal_scale: float = TEMPORAL_SCALE, exclude_self: bool = False, floor: float = 0.0,
              cutoff: float = 0.0) -> Item:
    """The stage-2 shots of ``frame_idx`` (see the module docstring).

    With ``exclude_self`` a painted frame is planned as if it were not painted (for ``L_s``); when
    no other painted frame is left, its memory is the next frame (the previous one at the end).
    Painted shots are weighed and cut as in stage 1, ``floor`` and ``cutoff`` included
    (``SessionConfig.support_weight_floor``, ``shot_cutoff``).
    """
    candidates = [f for f in painted if not (exclude_self and f == frame_idx)]
    chosen = useful_shots(frame_idx, nearest_first(candidates, frame_idx), max_shots, temporal_scale, floor, cutoff)
    supports = tuple((int(f), shot_weight(f - frame_idx, temporal_scale, floor)) for f in chosen)
    if chosen and chosen[0] == frame_idx:
        return Item(slot, frame_idx, supports)
    if chosen:
        step = 1 if chosen[0] > frame_idx else -1
    else:
        step = 1 if frame_idx + 1 < num_frames else -1
    m = frame_idx + step
    memory = None
    if 0 <= m < num_frames and m not in chosen:
        memory = (m, shot_weight(1, temporal_scale))
    return Item(slot, frame_idx, supports, memory)


@dataclass
class VideoClip:
    """Everything stage 2 needs for one cine (built by :func:`cineprop.relearn.clip_from_stage1.build_clip`).

    Attributes:
        name, shape: the cine's name and ``(H, W, T)``.
        roi: stage 1's region of interest (crops are ``R×R``).
        labels: label values; ``slot`` indexes this list.
        bank: ``N×1×R×R`` images in [0, 1]; indices ``0..T−1`` are the cine's frames.
        painted: ``{slot: {frame: R×R float mask}}``.
        stage1: ``L×T×R×R`` stage-1 foreground probabilities.
        memory_masks: ``{(slot, bank index): R×R float mask}`` for memory shots.
        grid: ``L×T`` inference items.
        exclusive: painted frames predicted without themselves: ``(item, R×R target)``.
        copies: deformed copies of painted frames: ``(item, R×R target)``.
        augmented: bank index of the first intensity-augmented frame (``L_tps``), or ``None``.
        stage1_result: the stage-1 :class:`~cineprop.propagation.Propagation`.
    """

    name: str
    shape: tuple[int, int, int]
    roi: Roi
    labels: list[int]
    bank: torch.Tensor
    painted: dict[int, dict[int, torch.Tensor]]
    stage1: torch.Tensor
    memory_masks: dict[tuple[int, int], torch.Tensor]
    grid: list[list[Item]]
    exclusive: list[tuple[Item, torch.Tensor]] = field(default_factory=list)
    copies: list[tuple[Item, torch.Tensor]] = field(default_factory=list)
    augmented: int | None = None
    stage1_result: Propagation | None = None

    @property
    def num_frames(self) -> int:
        return int(self.shape[2])

    @property
    def resolution(self) -> int:
        return int(self.bank.shape[-1])


@dataclass
class FusionInputs:
    """What the fusion consumes for ``N`` items (see :meth:`FewShotSegmenter.fuse`).

    Attributes:
        query: query features at strides 2, 4, 8 (``N×c×R/s×R/s``).
        support: shot-pooled support features at the same strides.
        mask: ``N×1×R×R`` shot-pooled support mask.
        pseudo: ``N×2×R/8×R/8`` pseudo mask.
    """

    query: list[torch.Tensor]
    support: list[torch.Tensor]
    mask: torch.Tensor
    pseudo: torch.Tensor

    def fuse(self, model: FewShotSegmenter) -> torch.Tensor:
        """``N×C×h×w`` fused features with ``model``'s fusion module."""
        return model.fusion(self.query, self.support, self.mask, self.pseudo)

    def part(self, index: int) -> "FusionInputs":
        return FusionInputs([q[index:index + 1] for q in self.query], [s[index:index + 1] for s in self.support],
                            self.mask[index:index + 1], self.pseudo[index:index + 1])

    @staticmethod
    def cat(parts: Sequence["FusionInputs"]) -> "FusionInputs":
        return FusionInputs([torch.cat([p.query[i] for p in parts]) for i in range(3)],
                            [torch.cat([p.support[i] for p in parts]) for i in range(3)],
                            torch.cat([p.mask for p in parts]), torch.cat([p.pseudo for p in parts]))


class ClipEncoder:
    """Fusion inputs of a clip's items, computed with ``model``'s backbone.

    With ``cache=True`` (a frozen backbone) backbone features and per-item inputs are computed once
    and reused; otherwise every call recomputes them (with gradients, when enabled).
    """

    def __init__(self, model: FewShotSegmenter, clip: VideoClip, cache: bool = True, batch: int = 16):
        self.model = model
        self.clip = clip
        self.cache = cache
        self.batch = batch
        self._features: dict[int, list[torch.Tensor]] = {}
        self._supports: dict[tuple[int, int], tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]] = {}
        self._inputs: dict[Item, FusionInputs] = {}

    def features(self, indices: Sequence[int]) -> dict[int, list[torch.Tensor]]:
        """Backbone features (``1×c×R/s×R/s`` at strides 2..16) of bank images."""
        out = {i: self._features[i] for i in indices if i in self._features}
        todo = [i for i in dict.fromkeys(indices) if i not in out]
        for start in range(0, len(todo), self.batch):
            chunk = todo[start:start + self.batch]
            feats = self.model.extract_features(self.clip.bank[chunk])
            for n, i in enumerate(chunk):
                out[i] = [f[n:n + 1] for f in feats]
                if self.cache:
                    self._features[i] = out[i]
        return out

    def _support(self, slot: int, frame: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        key = (slot, frame)
        if key in self._supports:
            return self._supports[key]
        r = self.clip.resolution
        mask = self.clip.painted[slot][frame].view(1, 1, 1, r, r)
        enc = self.model.encode_support(self.clip.bank[frame].view(1, 1, 1, r, r), mask)
        value = ([f[0, 0] for f in enc.features], enc.embedding[0, 0], mask[0, 0])
        if self.cache:
            self._supports[key] = value
        return value

    def inputs(self, items: Sequence[Item]) -> FusionInputs:
        """Fusion inputs of ``items`` (in order)."""
        todo = list(dict.fromkeys(it for it in items if it not in self._inputs))
        computed: dict[Item, FusionInputs] = {}
        for start in range(0, len(todo), 4 * self.batch):
            chunk = todo[start:start + 4 * self.batch]
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cache):  # cached ⇒ constants
                batch = self._compute(chunk)
            for n, it in enumerate(chunk):
                computed[it] = batch.part(n)
        if self.cache:
            self._inputs.update(computed)
        return FusionInputs.cat([self._inputs[it] if it in self._inputs else computed[it] for it in items])

    def _compute(self, items: Sequence[Item]) -> FusionInputs:
        model, r = self.model, self.clip.resolution
        memories = [it.memory[0] for it in items if it.memory is not None]
        feats = self.features([it.query for it in items] + memories)
        rows, weights = [], []
        for it in items:
            shots = [self._support(it.slot, f) for f, _ in it.supports]
            w = [wt for _, wt in it.supports]
            if it.memory is not None:
                index, wt = it.memory
                mask = self.clip.memory_masks[(it.slot, index)].view(1, 1, r, r)
                masked, embedding = model.encode_memory(feats[index], mask)
                shots.append(([m[0] for m in masked], embedding[0], mask[0]))
                w.append(wt)
            rows.append(shots)
            weights.append(w)
        k = max(len(s) for s in rows)

        def stack(part: int, level: int | None = None) -> torch.Tensor:
            out = []
            for shots in rows:
                items_ = [s[part] if level is None else s[part][level] for s in shots]
                items_ += [torch.zeros_like(items_[0])] * (k - len(items_))
                out.append(torch.stack(items_))
            return torch.stack(out)

        enc = SupportEncoding([stack(0, lv) for lv in range(3)], stack(1), stack(2))
        wts = torch.tensor([w + [0.0] * (k - len(w)) for w in weights], device=self.clip.bank.device)
        query = [torch.cat([feats[it.query][lv] for it in items]) for lv in range(4)]
        pseudo = model.pseudo_mask(model.embed(query), enc, wts)
        support, mask = model.pool_support(enc, wts)
        return FusionInputs(query[:3], support, mask, pseudo)


@torch.no_grad()
def predict(model: FewShotSegmenter, clip: VideoClip, encoder: ClipEncoder | None = None,
            chunk: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2 over the whole clip, in chunks of frames (with TAU context at their edges).

    ``model`` is the image model (the relearning teacher: no temporal context) or a
    :class:`~cineprop.model.VideoSegmenter`; both run ``fuse`` → ``temporal_attend`` → ``decode``.

    Returns:
        ``L×T×R×R`` foreground probabilities and ``L×T×C×h×w`` features entering the head.
    """
    encoder = encoder or ClipEncoder(model, clip, cache=False)
    num_labels, t = len(clip.labels), clip.num_frames
    w = model.temporal_window
    probs, feats = [], []
    for start in range(0, t, chunk):
        stop = min(t, start + chunk)
        lo, hi = max(0, start - w), min(t, stop + w)
        items = [clip.grid[s][i] for s in range(num_labels) for i in range(lo, hi)]
        fused = encoder.inputs(items).fuse(model)
        fused = fused.view(num_labels, hi - lo, *fused.shape[1:])
        out = model.temporal_attend(fused)[:, start - lo:stop - lo]
        logits = model.decode(out.flatten(0, 1))
        probs.append(torch.softmax(logits, 1)[:, 1].view(num_labels, stop - start, *logits.shape[-2:]))
        feats.append(out)
    return torch.cat(probs, 1), torch.cat(feats, 1)


def warp_grid(flow: np.ndarray) -> torch.Tensor:
    """``R×R×2`` pixel flow (:mod:`cineprop.flow` convention) → ``1×R×R×2`` grid for ``grid_sample``."""
    h, w = flow.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (2.0 * (gx + flow[..., 0]) + 1.0) / w - 1.0
    y = (2.0 * (gy + flow[..., 1]) + 1.0) / h - 1.0
    return torch.from_numpy(np.stack([x, y], -1)[None].astype(np.float32))


def warp(probs: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``B×R×R`` maps with a ``1×R×R×2`` grid (bilinear, border replicated)."""
    return F.grid_sample(probs[:, None], grid.expand(probs.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)[:, 0]
