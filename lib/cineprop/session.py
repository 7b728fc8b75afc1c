"""A per-cine propagation session: frames, cached features, supports and memory.

``session = PropagationSession(model, cine)``; ``session.add_support(frame_idx, labels)`` for each
painted frame; ``session.propagate()`` → :class:`~cineprop.propagation.Propagation`. Correcting or
adding a frame and calling ``propagate()`` again recomputes only what changed:

* backbone features of every frame are cached (bounded LRU, so long clips stream);
* the forward sweep (frames in increasing order) uses only supports at or before each frame and
  the backward sweep only supports at or after it, so after a change at frame ``f`` the forward
  results before ``f`` and the backward results after ``f`` are reused.

Within a sweep each query frame is segmented from the nearest painted frames behind it (image-
masked support encodings, weighted by temporal distance) plus a *memory*: the last prediction of
the sweep whose confidence passed ``memory_threshold`` (feature-masked, so it costs no extra
backbone pass). Low-confidence predictions are never written to memory, so one bad frame does not
contaminate the rest of a long clip. A frame between two painted frames is decoded once more with
both of them as its shots (the *bridge*, ``SessionConfig.bridge``); elsewhere the two sweeps are
blended by temporal distance. Where both sweeps reach a frame, their disagreement lowers its
confidence. All labels go through one forward pass (batch dimension = labels).

*Flow blend* (``flow_weight``, default 0.9): the model's probabilities are blended with the painted
masks carried frame to frame by dense optical flow (the ``dis`` baseline by default, ``flow_method``;
fields computed once per session). The carried masks lead and the network decides where the carrier
is unsure (see :class:`SessionConfig` for the choice on the tuning sets). A frame's confidence is
then the carrier's own (forward/backward agreement between two painted frames, crispness of the
carried mask past the last one) bounded by the Dice agreement of network and carrier: frames where
motion is unsure, or where appearance and motion disagree, are the ones flagged for review.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from cineprop.errors import SupportError
from cineprop.io.cine import Cine
from cineprop.metrics import dice
from cineprop.propagation import Propagation, finish
from cineprop.roi import Roi, bounding_box, roi_around
from cineprop.session_carrier import CarrierBlend
from cineprop.session_config import SessionConfig
from cineprop.shots import certainty, shot_weight, useful_shots
from cineprop.support import SupportSet
from cineprop.transforms import normalise_intensity


@dataclass
class _Sweep:
    """Cached result of one sweep at one frame."""

    key: int
    probs: dict[int, np.ndarray]          # label -> R×R foreground probability
    certainty: dict[int, float]
    anchor: dict[int, int]                # label -> painted frame the chain started from
    memory: dict[int, tuple[int, torch.Tensor]] = field(default_factory=dict)  # state after this frame
    memory_keys: dict[int, int] = field(default_factory=dict)   # label -> key of the result its memory came from


class PropagationSession(CarrierBlend):
    """State of one cine being segmented (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, cine: Cine, config: SessionConfig = SessionConfig(),
                 device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.cine = cine
        self.config = config
        self.device = torch.device(device)
        self.resolution = int(model.config.resolution)
        self.frames = normalise_intensity(cine.frames)          # H×W×T in [0, 1]
        self.supports: dict[int, dict[int, np.ndarray]] = {}     # label -> frame -> H×W bool
        self.roi: Roi | None = None
        self._features: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self._encodings: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._sweeps: dict[int, dict[int, _Sweep]] = {1: {}, -1: {}}
        self._flow_field = None                                  # the carrier's field, built on first use
        self._carrier = None                                     # the carrier on that field (caches its chains)
        self._flow_carried = None                                # (support key, its flow Propagation)
        self._bridges: dict[tuple[int, int], tuple[tuple, np.ndarray]] = {}   # (frame, label) -> (key, R×R prob)
        self.stats: Counter = Counter()
        #: ``{label: T×R×R}`` foreground probabilities of the last :meth:`propagate` inside the ROI.
        self.roi_probabilities: dict[int, np.ndarray] = {}

    # ---- supports --------------------------------------------------------------------------------
    def add_support(self, frame_idx: int, labels: np.ndarray) -> None:
        """Set what is painted on ``frame_idx`` (``H×W`` integer labels; replaces earlier paint there)."""
        h, w, t = self.cine.shape
        labels = np.asarray(labels)
        if labels.shape != (h, w):
            raise SupportError(f"support for frame {frame_idx} has shape {labels.shape}, expected {(h, w)}")
        if not 0 <= int(frame_idx) < t:
            raise SupportError(f"support frame {frame_idx} is outside 0..{t - 1}")
        self._drop_frame(int(frame_idx))
        for value in np.unique(labels):
            if value:
                if not 1 <= int(value) <= 255:
                    raise SupportError(f"label value {value} is outside 1..255")
                self.supports.setdefault(int(value), {})[int(frame_idx)] = labels == value
        self._update_roi()

    def remove_support(self, frame_idx: int) -> None:
        self._drop_frame(int(frame_idx))
        self._update_roi()

    def set_supports(self, support: SupportSet) -> None:
        """Replace all supports by ``support`` (caches of unchanged painted frames are kept)."""
        supports = {label: dict(frames) for label, frames in support.masks.items()}
        for label, frame_idx in list(self._encodings):     # a repainted or removed frame's encoding is stale
            old = self.supports.get(label, {}).get(frame_idx)
            new = supports.get(label, {}).get(frame_idx)
            if old is None or new is None or not np.array_equal(old, new):
                del self._encodings[(label, frame_idx)]
        self.supports = supports
        self._update_roi()

    def memory_bytes(self) -> int:
        """Approximate bytes this session holds: frames, cached features and encodings, sweep results, flow."""
        tensors = [t for feats in self._features.values() for t in feats]
        tensors += [t for enc in self._encodings.values() for t in enc]
        total = self.frames.nbytes + sum(t.element_size() * t.nelement() for t in tensors)
        total += sum(p.nbytes for sweeps in self._sweeps.values() for s in sweeps.values() for p in s.probs.values())
        total += sum(p.nbytes for p in self.roi_probabilities.values())
        total += sum(p.nbytes for _, p in self._bridges.values())
        if self._flow_field is not None:
            total += self._flow_field.nbytes + self._carrier.cached_bytes
        return int(total)

    def _drop_frame(self, frame_idx: int) -> None:
        for label in list(self.supports):
            self.supports[label].pop(frame_idx, None)
            self._encodings.pop((label, frame_idx), None)
            if not self.supports[label]:
                del self.supports[label]

    def support_set(self) -> SupportSet:
        return SupportSet({k: dict(v) for k, v in self.supports.items()}, self.cine.shape)

    def _update_roi(self) -> None:
        """Choose the ROI around the current supports (a function of them alone, so a corrected session
        and a fresh one with the same supports look at the same square); every cache is kept while it
        does not move."""
        box = None
        if self.config.use_roi:
            box = bounding_box(m for frames in self.supports.values() for m in frames.values())
            if box is None:
                return
        roi = roi_around(box, self.cine.shape[:2], self.config.roi_margin, self.config.roi_min_side)
        if roi != self.roi:
            self.roi = roi
            self._features.clear()
            self._encodings.clear()
            self._sweeps = {1: {}, -1: {}}
            self._bridges = {}

    # ---- features ------------------------------------------------------------------------------
    def _crop(self, frame_idx: int) -> np.ndarray:
        return self.roi.crop(self.frames[:, :, frame_idx], self.resolution)

    def _to_tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)[:, None]).to(self.device)

    def features(self, frame_idx: int, direction: int = 1) -> list[torch.Tensor]:
        """Backbone features of one frame (``[c×R/s×R/s]`` at strides 2..16), computed in batches."""
        if frame_idx not in self._features:
            t = self.cine.num_frames
            span = range(frame_idx, min(t, frame_idx + self.config.batch_frames)) if direction > 0 else \
                range(frame_idx, max(-1, frame_idx - self.config.batch_frames), -1)
            todo = [i for i in span if i not in self._features]
            feats = self.model.extract_features(self._to_tensor([self._crop(i) for i in todo]))
            self.stats["backbone_frames"] += len(todo)
            for n, i in enumerate(todo):
                self._features[i] = [f[n] for f in feats]
            while len(self._features) > self.config.max_cached_frames:
                self._features.popitem(last=False)
        self._features.move_to_end(frame_idx)
        return self._features[frame_idx]

    def _encoding(self, label: int, frame_idx: int) -> list[torch.Tensor]:
        """Image-masked support encoding ``[s2, s4, s8 features, embedding, mask]`` of a painted frame."""
        key = (label, frame_idx)
        if key not in self._encodings:
            image = self._to_tensor([self._crop(frame_idx)])[None]                 # 1×1×1×R×R
            mask = self._to_tensor([self.roi.crop(self.supports[label][frame_idx], self.resolution,
                                                  nearest=True)])[None]
            enc = self.model.encode_support(image, mask)
            self.stats["support_encodings"] += 1
            self._encodings[key] = [f[0, 0] for f in enc.features] + [enc.embedding[0, 0], mask[0, 0]]
        return self._encodings[key]

    def _memory_encoding(self, frame_idx: int, mask: torch.Tensor) -> list[torch.Tensor]:
        """Feature-masked encoding of a predicted frame (no extra backbone pass)."""
        feats = self.features(frame_idx)
        masked, embedding = self.model.encode_memory([f[None] for f in feats], mask[None])
        return [f[0] for f in masked] + [embedding[0], mask]

    # ---- propagation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def propagate(self) -> Propagation:
        """Segment every frame from the current supports (see the module docstring)."""
        if not self.supports:
            raise SupportError("no support: paint at least one structure on at least one frame")
        start = time.perf_counter()
        h, w, t = self.cine.shape
        mask_hash = self._mask_hashes()
        forward, backward = self._sweep(1, mask_hash), self._sweep(-1, mask_hash)
        probabilities = {label: np.zeros((h, w, t), np.float32) for label in self.supports}
        confidence = np.ones((len(self.supports), t), np.float32)
        self.roi_probabilities = {}
        labels = sorted(self.supports)
        for label in labels:
            self.roi_probabilities[label] = np.zeros((t, self.resolution, self.resolution), np.float32)
        for i in range(t):
            bridges = self._bridge(i, forward[i], backward[i], mask_hash)
            for slot, label in enumerate(labels):
                p, conf = self._blend(label, i, forward[i], backward[i], bridges.get(label))
                self.roi_probabilities[label][i] = p
                probabilities[label][:, :, i] = self.roi.paste(p, (h, w))
                confidence[slot, i] = conf
        support = self.support_set()
        if self.config.flow_weight > 0:        # the sweeps' confidence gives way to the carrier's (see below)
            confidence = self._blend_flow(probabilities, support)
        details = {"roi": [self.roi.y0, self.roi.x0, self.roi.side], "stats": dict(self.stats)}
        return finish(probabilities, confidence.min(axis=0), support, time.perf_counter() - start, details,
                      self.config.flag_threshold)

    def _blend(self, label: int, frame_idx: int, f: _Sweep, b: _Sweep,
               bridge: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """One label's probability (``R×R``) and certainty at a frame from the two sweeps: the bridge where
        there is one, else the sweeps blended by distance to their painted frames; where both sweeps
        reach the frame, their disagreement bounds the certainty."""
        in_f, in_b = label in f.probs, label in b.probs
        if in_f and in_b:
            a, z = f.anchor[label], b.anchor[label]
            if a == z:
                return f.probs[label], 1.0
            p = bridge
            if p is None:
                wf = (z - frame_idx) / (z - a)
                p = wf * f.probs[label] + (1.0 - wf) * b.probs[label]
            return p, min(certainty(p), dice(f.probs[label] > 0.5, b.probs[label] > 0.5))
        only = f if in_f else b
        return only.probs[label], only.certainty[label]

    def _bridge(self, frame_idx: int, f: _Sweep, b: _Sweep,
                mask_hash: dict[tuple[int, int], int]) -> dict[int, np.ndarray]:
        """``{label: R×R probability}`` decoded with the painted frames on both sides of ``frame_idx`` as
        its two shots (``SessionConfig.bridge``), for the labels painted on both sides; cached by frame
        and the two paintings, so a correction re-decodes only the frames between its neighbours."""
        cfg, todo, out = self.config, [], {}
        if not cfg.bridge:
            return out
        for label in sorted(self.supports):
            a, z = f.anchor.get(label), b.anchor.get(label)
            if a is None or z is None or a == z:
                continue
            key = (self.roi, a, z, mask_hash[(label, a)], mask_hash[(label, z)])
            cached = self._bridges.get((frame_idx, label))
            if cached is not None and cached[0] == key:
                out[label] = cached[1]
                continue
            weights = [shot_weight(frame_idx - a, cfg.temporal_scale), shot_weight(z - frame_idx, cfg.temporal_scale)]
            todo.append((label, [self._encoding(label, a), self._encoding(label, z)], weights, key))
        if todo:
            probs = self._decode_batch(frame_idx, 1, [job[:3] for job in todo])
            self.stats["bridged"] += len(todo)
            for (label, _, _, key), prob in zip(todo, probs):
                self._bridges[(frame_idx, label)] = key, prob
                out[label] = prob
        return out

    def _frame_key(self, static: int, frame_idx: int, anchors: dict[int, list[int]],
                   memory_keys: dict[int, int], mask_hash: dict[tuple[int, int], int]) -> int:
        """Hash of everything a sweep's result at ``frame_idx`` depends on.

        Per label: the painting, if painted here; else the painted frames used as shots (with their
        masks) and the key of the result its memory came from. So a new painting invalidates only the
        frames that use it as a shot or whose memory chain passes through it; past the next painted
        frames (which reset memory) the sweep is reused.
        """
        parts = []
        for label in sorted(anchors):
            behind = anchors[label]
            if behind[0] == frame_idx:
                parts.append((label, mask_hash[(label, frame_idx)]))
            else:
                shots = tuple((f, mask_hash[(label, f)]) for f in self._shots(frame_idx, behind))
                parts.append((label, shots, memory_keys.get(label)))
        return hash((static, frame_idx, tuple(parts)))

    def _mask_hashes(self) -> dict[tuple[int, int], int]:
        """``{(label, frame): hash of its painted mask}``, once per :meth:`propagate`: what the sweeps' and
        the bridge's caches key on."""
        return {(label, f): hash(m.tobytes()) for label, frames in self.supports.items() for f, m in frames.items()}

    def _sweep(self, direction: int, mask_hash: dict[tuple[int, int], int]) -> dict[int, _Sweep]:
        t = self.cine.num_frames
        cache = self._sweeps[direction]
        order = range(t) if direction > 0 else range(t - 1, -1, -1)
        static = hash((direction, self.roi, self.config))
        memory: dict[int, tuple[int, torch.Tensor]] = {}
        memory_keys: dict[int, int] = {}
        anchors: dict[int, list[int]] = {}
        results: dict[int, _Sweep] = {}
        for i in order:
            for label, frames in self.supports.items():
                if i in frames:
                    anchors.setdefault(label, []).insert(0, i)
            key = self._frame_key(static, i, anchors, memory_keys, mask_hash)
            hit = cache.get(i)
            if hit is None or hit.key != key:
                hit = cache[i] = self._segment_frame(i, direction, anchors, memory, memory_keys, key)
            results[i], memory, memory_keys = hit, dict(hit.memory), dict(hit.memory_keys)
        return results

    def _shots(self, frame_idx: int, behind: list[int]) -> list[int]:
        """The painted frames (nearest first) that frame ``frame_idx``'s prediction takes as shots."""
        cfg = self.config
        return useful_shots(frame_idx, behind, cfg.max_shots, cfg.temporal_scale, cfg.support_weight_floor,
                            cfg.shot_cutoff)

    def _segment_frame(self, frame_idx: int, direction: int, anchors: dict[int, list[int]],
                       memory: dict[int, tuple[int, torch.Tensor]], memory_keys: dict[int, int], key: int) -> _Sweep:
        cfg, r = self.config, self.resolution
        result = _Sweep(key, {}, {}, {}, dict(memory), dict(memory_keys))
        todo: list[tuple[int, list[list[torch.Tensor]], list[float]]] = []
        for label, behind in anchors.items():
            result.anchor[label] = behind[0]
            if behind[0] == frame_idx:                      # painted here: exact, and the new memory
                mask = self.roi.crop(self.supports[label][frame_idx], r, nearest=True)
                result.probs[label], result.certainty[label] = mask, 1.0
                result.memory[label] = (frame_idx, torch.from_numpy(mask)[None].to(self.device))
                result.memory_keys[label] = key
                continue
            chosen = self._shots(frame_idx, behind)
            shots = [self._encoding(label, f) for f in chosen]
            weights = [shot_weight(frame_idx - f, cfg.temporal_scale, cfg.support_weight_floor) for f in chosen]
            if cfg.memory and label in memory and memory[label][0] not in chosen:
                m_frame, m_mask = memory[label]
                shots.append(self._memory_encoding(m_frame, m_mask))
                weights.append(shot_weight(frame_idx - m_frame, cfg.temporal_scale))
            todo.append((label, shots, weights))
        if not todo:
            return result
        probs = self._decode_batch(frame_idx, direction, todo)
        self.stats["decoded"] += len(todo)
        for (label, _, _), prob in zip(todo, probs):
            result.probs[label] = prob
            result.certainty[label] = c = certainty(prob)
            if c >= cfg.memory_threshold and (not cfg.memory_needs_object or prob.max() > 0.5):
                result.memory[label] = (frame_idx, torch.from_numpy((prob > 0.5).astype(np.float32))[None]
                                        .to(self.device))
                result.memory_keys[label] = key
        return result

    def _decode_batch(self, frame_idx: int, direction: int,
                      todo: list[tuple[int, list[list[torch.Tensor]], list[float]]]) -> list[np.ndarray]:
        """One forward pass for all labels of a frame → ``R×R`` foreground probability per label."""
        from cineprop.model import SupportEncoding

        b, k = len(todo), max(len(shots) for _, shots, _ in todo)
        q = self.features(frame_idx, direction)
        q_feats = [f[None].expand(b, *f.shape) for f in q]

        def stack(part: int) -> torch.Tensor:
            rows = []
            for _, shots, _ in todo:
                items = [s[part] for s in shots]
                items += [torch.zeros_like(items[0])] * (k - len(items))
                rows.append(torch.stack(items))
            return torch.stack(rows)

        weights = torch.tensor([w + [0.0] * (k - len(w)) for _, _, w in todo], device=self.device)
        enc = SupportEncoding([stack(0), stack(1), stack(2)], stack(3), stack(4))
        pseudo = self.model.pseudo_mask(self.model.embed(q_feats), enc, weights)
        fused = self.model.fuse(q_feats, enc, weights, pseudo)
        logits = self.model.decode(fused)
        return list(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
