"""Episode sampling: one query, ``K`` painted supports and (sometimes) a memory frame.

Episode kinds (mixed by ``EpisodeMix``):

* ``cine_neighbour`` — a label of one ACDC sequence; supports are frames near the query (the
  situation of propagation), the memory is the frame next to the query with a possibly corrupted
  mask (an imperfect earlier prediction);
* ``cine_cross`` — supports and query from different sequences (classic few-shot);
* ``image_pair`` — one labelled image and small deformations of it standing in for neighbouring
  frames (teaches propagation from 2D data of other modalities);
* ``image_cross`` — different images of the same 2D set.

The crop follows the session: a square around the support masks with a random margin and shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cineprop.roi import bounding_box
from cineprop.shots import shot_weight
from cineprop.training.augment import (corrupt_mask, deform, jitter_roi, random_intensity, random_view)
from cineprop.training.data import CineSet, ImageSet



@dataclass(frozen=True)
class EpisodeMix:
    """Probabilities of each episode kind and the weight of each 2D set."""

    cine_neighbour: float = 0.45
    cine_cross: float = 0.10
    image_pair: float = 0.30
    image_cross: float = 0.15
    image_sets: dict = field(default_factory=lambda: {"hc18": 0.4, "busi": 0.4, "chasedb1": 0.2})
    memory_probability: float = 0.6
    corrupt_probability: float = 0.5


@dataclass
class Episode:
    """Arrays at ``R×R``: query/target, supports and masks (K each), weights, optional memory."""

    query: np.ndarray
    target: np.ndarray
    supports: list[np.ndarray]
    masks: list[np.ndarray]
    weights: list[float]
    memory: np.ndarray | None = None
    memory_mask: np.ndarray | None = None
    memory_weight: float = 0.0


class EpisodeSampler:
    """Draws episodes and collates batches (see the module docstring)."""

    def __init__(self, cines: CineSet | None, images: list[ImageSet], resolution: int,
                 mix: EpisodeMix = EpisodeMix(), seed: int = 0):
        self.cines = cines if cines is not None and len(cines) else None
        self.images = {s.name: s for s in images if len(s)}
        self.resolution = resolution
        self.mix = mix
        self.rng = np.random.default_rng(seed)
        kinds = {"cine_neighbour": mix.cine_neighbour, "cine_cross": mix.cine_cross,
                 "image_pair": mix.image_pair, "image_cross": mix.image_cross}
        if self.cines is None:
            kinds.pop("cine_neighbour"), kinds.pop("cine_cross")
        if not self.images:
            kinds.pop("image_pair"), kinds.pop("image_cross")
        if not kinds:
            raise ValueError("no training data")
        self.kinds = list(kinds)
        p = np.array(list(kinds.values()), float)
        self.kind_p = p / p.sum()
        names = list(self.images)
        q = np.array([mix.image_sets.get(n, 0.1) for n in names], float)
        self.set_names, self.set_p = names, q / q.sum() if q.sum() else None

    # ---- collation -------------------------------------------------------------------------------
    def batch(self, size: int, shots: int) -> dict[str, torch.Tensor]:
        episodes = [self.episode(shots) for _ in range(size)]
        r = self.resolution
        zeros = np.zeros((r, r), np.float32)

        def t(arrays) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)).astype(np.float32))

        return {
            "query": t([e.query for e in episodes])[:, None],
            "target": t([e.target for e in episodes]).long(),
            "support": t([np.stack(e.supports) for e in episodes])[:, :, None],
            "support_mask": t([np.stack(e.masks) for e in episodes])[:, :, None],
            "weights": t([e.weights for e in episodes]),
            "memory": t([zeros if e.memory is None else e.memory for e in episodes])[:, None],
            "memory_mask": t([zeros if e.memory_mask is None else e.memory_mask for e in episodes])[:, None],
            "memory_weight": t([e.memory_weight for e in episodes]),
        }

    def episode(self, shots: int) -> Episode:
        kind = self.kinds[int(self.rng.choice(len(self.kinds), p=self.kind_p))]
        for _ in range(20):
            ep = getattr(self, f"_{kind}")(shots)
            if ep is not None:
                return ep
        raise RuntimeError(f"could not sample a {kind} episode")

    # ---- episode kinds ---------------------------------------------------------------------------
    def _finish(self, view_roi, query, target, supports, masks, weights, memory=None) -> Episode:
        rng = self.rng
        view = random_view(rng, view_roi, self.resolution)
        tone = random_intensity(rng)

        def img(x: np.ndarray) -> np.ndarray:
            return tone.apply(rng, view.apply(x))

        def msk(m: np.ndarray) -> np.ndarray:
            return view.apply(m.astype(np.float32), nearest=True) > 0.5

        ep = Episode(img(query), msk(target), [img(s) for s in supports], [msk(m) for m in masks], weights)
        if memory is not None:
            ep.memory, ep.memory_mask, ep.memory_weight = img(memory[0]), msk(memory[1]), memory[2]
        return ep

    def _memory_mask(self, mask: np.ndarray) -> np.ndarray:
        return corrupt_mask(self.rng, mask) if self.rng.random() < self.mix.corrupt_probability else mask

    def _cine_neighbour(self, shots: int) -> Episode | None:
        rng, cs = self.rng, self.cines
        i = int(rng.integers(len(cs)))
        frames, labels = cs.frames[i], cs.labels[i]
        values = [v for v in cs.label_values if (labels == v).any()]
        if not values:
            return None
        label = int(rng.choice(values))
        present = [t for t in range(labels.shape[2]) if (labels[:, :, t] == label).any()]
        if len(present) < 2:
            return None
        t_count = labels.shape[2]
        query = int(rng.choice(present)) if rng.random() < 0.9 else int(rng.integers(t_count))
        others = [t for t in present if t != query]
        distance = int(rng.choice([1, 2, 3, 4, 6], p=[0.45, 0.25, 0.15, 0.1, 0.05]))
        target_frame = query + distance * (1 if rng.random() < 0.5 else -1)
        first = min(others, key=lambda t: (abs(t - target_frame), rng.random()))
        rest = [t for t in others if t != first]
        chosen = [first] + [int(t) for t in rng.permutation(rest)[: shots - 1]]
        while len(chosen) < shots:
            chosen.append(first)
        masks = [labels[:, :, t] == label for t in chosen]
        box_masks = [labels[:, :, t] > 0 for t in chosen] if rng.random() < 0.5 else masks
        roi = jitter_roi(rng, bounding_box(box_masks), labels.shape[:2], margin=(0.5, 1.6), shift=0.08)
        memory = None
        if rng.random() < self.mix.memory_probability:
            m = query + (1 if first > query else -1)
            if 0 <= m < t_count and m != query and m not in chosen:
                memory = (frames[:, :, m], self._memory_mask(labels[:, :, m] == label), shot_weight(1))
        weights = [shot_weight(t - query) for t in chosen]
        return self._finish(roi, frames[:, :, query], labels[:, :, query] == label,
                            [frames[:, :, t] for t in chosen], masks, weights, memory)

    def _cine_cross(self, shots: int) -> Episode | None:
        rng, cs = self.rng, self.cines
        a, b = rng.choice(len(cs), 2, replace=False)
        label = int(rng.choice(cs.label_values))
        pa = [t for t in range(cs.labels[a].shape[2]) if (cs.labels[a][:, :, t] == label).any()]
        pb = [t for t in range(cs.labels[b].shape[2]) if (cs.labels[b][:, :, t] == label).any()]
        if not pa or not pb:
            return None
        q = int(rng.choice(pb))
        chosen = [int(t) for t in rng.choice(pa, size=shots, replace=len(pa) < shots)]
        return self._cross([cs.frames[a][:, :, t] for t in chosen], [cs.labels[a][:, :, t] == label for t in chosen],
                           cs.frames[b][:, :, q], cs.labels[b][:, :, q] == label)

    def _pick_set(self) -> ImageSet:
        return self.images[self.set_names[int(self.rng.choice(len(self.set_names), p=self.set_p))]]

    def _image_pair(self, shots: int) -> Episode | None:
        rng = self.rng
        s = self._pick_set()
        i = int(rng.integers(len(s)))
        image, mask = s.images[i], s.masks[i]
        query, target = deform(rng, image, mask, float(rng.uniform(0.3, 1.5)))
        supports, masks, weights = [image], [mask], [shot_weight(1)]
        for _ in range(shots - 1):
            d = float(rng.uniform(1, 5))
            x, m = deform(rng, image, mask, 0.5 + d / 3)
            supports.append(x), masks.append(m), weights.append(shot_weight(d))
        memory = None
        if rng.random() < self.mix.memory_probability:
            x, m = deform(rng, query, target, 0.4)
            memory = (x, self._memory_mask(m), shot_weight(1))
        if not target.any():
            return None
        roi = jitter_roi(rng, bounding_box([mask]), mask.shape, margin=(0.5, 1.6), shift=0.08)
        return self._finish(roi, query, target, supports, masks, weights, memory)

    def _image_cross(self, shots: int) -> Episode | None:
        rng = self.rng
        s = self._pick_set()
        if len(s) < shots + 1:
            return None
        idx = rng.choice(len(s), shots + 1, replace=False)
        return self._cross([s.images[i] for i in idx[1:]], [s.masks[i] for i in idx[1:]],
                           s.images[idx[0]], s.masks[idx[0]])

    def _cross(self, supports, masks, query, target) -> Episode:
        """Images from different sources: each cropped around its own structure, own flips, shared tone."""
        rng, r = self.rng, self.resolution
        tone = random_intensity(rng)
        out_s, out_m = [], []
        for x, m in zip([query] + list(supports), [target] + list(masks)):
            view = random_view(rng, jitter_roi(rng, bounding_box([m]), m.shape, (0.5, 1.6), 0.2), r)
            out_s.append(tone.apply(rng, view.apply(x)))
            out_m.append(view.apply(m.astype(np.float32), nearest=True) > 0.5)
        weights = [float(rng.uniform(0.3, 1.0)) for _ in supports]
        return Episode(out_s[0], out_m[0], out_s[1:], out_m[1:], weights)

