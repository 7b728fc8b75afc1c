"""Support frames: the painted frames a propagation starts from.

A :class:`SupportSet` maps each label value to the frames painted for it and their binary masks.
Each label is its own few-shot task, so two labels may be painted on different frames.

* From a user's label volume (:meth:`SupportSet.from_labels`): the support frames are the frames
  whose label is non-empty (or the frames named explicitly); a label's support frames are those of
  them where it appears.
* For evaluation (:func:`select_support`): per label, ``first`` takes the first frame where that
  label appears, ``middle`` the middle one of those frames; ``shots=K`` adds ``K − 1`` more of
  those frames spread evenly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from cineprop.errors import SupportError

STRATEGIES = ("first", "middle")


@dataclass
class SupportSet:
    """Per-label painted frames of one cine.

    Attributes:
        masks: ``{label: {frame_idx: H×W bool mask}}``; every mask is non-empty.
        shape: ``(H, W, T)`` of the cine.
    """

    masks: dict[int, dict[int, np.ndarray]]
    shape: tuple[int, int, int]
    _frames: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        h, w, t = self.shape
        clean: dict[int, dict[int, np.ndarray]] = {}
        for label, frames in sorted(self.masks.items()):
            if not 1 <= int(label) <= 255:
                raise SupportError(f"label value {label} is outside 1..255")
            for idx, mask in sorted(frames.items()):
                if not 0 <= int(idx) < t:
                    raise SupportError(f"support frame {idx} is outside 0..{t - 1}")
                mask = np.asarray(mask, dtype=bool)
                if mask.shape != (h, w):
                    raise SupportError(f"support mask of frame {idx} has shape {mask.shape}, expected {(h, w)}")
                if mask.any():
                    clean.setdefault(int(label), {})[int(idx)] = mask
        if not clean:
            raise SupportError("no support: paint at least one structure on at least one frame")
        self.masks = clean
        self._frames = sorted({f for frames in clean.values() for f in frames})

    @property
    def labels(self) -> list[int]:
        """Label values with at least one support frame, ascending."""
        return sorted(self.masks)

    @property
    def frames(self) -> list[int]:
        """All support frames (of any label), ascending."""
        return list(self._frames)

    def frames_of(self, label: int) -> list[int]:
        return sorted(self.masks[label])

    def all_masks(self) -> list[np.ndarray]:
        """Every painted ``H×W`` bool mask, of any label on any frame."""
        return [mask for frames in self.masks.values() for mask in frames.values()]

    def label_array(self, frame_idx: int) -> np.ndarray:
        """The ``H×W`` uint8 label image painted on ``frame_idx`` (0 where nothing was painted)."""
        out = np.zeros(self.shape[:2], dtype=np.uint8)
        for label, frames in self.masks.items():
            if frame_idx in frames:
                out[frames[frame_idx]] = label
        return out

    @classmethod
    def from_labels(cls, labels: np.ndarray, frames: Iterable[int] | None = None) -> "SupportSet":
        """Build the support from an ``H×W×T`` label array.

        Args:
            labels: integer labels, 0 background.
            frames: restrict the support to these frames; default: every frame with a non-zero label.

        Raises:
            SupportError: nothing painted, a named frame out of range, a frame painted everywhere
                (no background: nothing left to segment), or labels that are not integers 0..255
                (NaN, fractions, unsupported types, values out of range).
        """
        labels = np.asarray(labels)
        if labels.ndim != 3:
            raise SupportError(f"support labels must be H×W×T, got shape {labels.shape}")
        if labels.dtype.kind not in "biuf":
            raise SupportError(f"support labels have unsupported type {labels.dtype}; expected integers 0..255")
        if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and np.all(labels == np.round(labels))):
            raise SupportError("support labels must be integers 0..255; found NaN, infinite or fractional values")
        t = labels.shape[2]
        if frames is None:
            chosen = [i for i in range(t) if labels[:, :, i].any()]
        else:
            chosen = sorted({int(i) for i in frames})
            bad = [i for i in chosen if not 0 <= i < t]
            if bad:
                raise SupportError(f"support frames {bad} are outside 0..{t - 1}")
        masks: dict[int, dict[int, np.ndarray]] = {}
        for i in chosen:
            frame = labels[:, :, i]
            if frame.size and frame.all():
                raise SupportError(f"support frame {i} is painted everywhere (no background pixel left); paint "
                                   "only the structures, not the whole frame")
            for value in np.unique(frame):
                if value:
                    masks.setdefault(int(value), {})[i] = frame == value
        return cls(masks, tuple(labels.shape))  # type: ignore[arg-type]

    def restricted_to(self, labels: Sequence[int]) -> "SupportSet":
        return SupportSet({k: v for k, v in self.masks.items() if k in labels}, self.shape)


def spread_frames(candidates: Sequence[int], anchor_pos: int, shots: int) -> list[int]:
    """Pick ``shots`` of ``candidates`` (sorted frames): the anchor plus others spread evenly.

    The evenly spaced positions ``round(linspace(0, n−1, shots))`` (halves up) are taken, the one nearest the
    anchor is replaced by the anchor, and clashes are resolved with the nearest unused positions.
    """
    n = len(candidates)
    if shots < 1:
        raise SupportError(f"shots must be ≥ 1, got {shots}")
    if shots >= n:
        return list(candidates)
    positions = [int(np.floor(p + 0.5)) for p in np.linspace(0, n - 1, shots)]
    nearest = min(range(shots), key=lambda i: abs(positions[i] - anchor_pos))
    positions[nearest] = anchor_pos
    chosen: list[int] = []
    for p in positions:
        if p in chosen:
            p = min((q for q in range(n) if q not in chosen), key=lambda q: abs(q - p))
        chosen.append(p)
    return sorted(candidates[p] for p in chosen)


def select_support(labels: np.ndarray, strategy: str = "first", shots: int = 1,
                   label_values: Iterable[int] | None = None) -> SupportSet:
    """Choose evaluation support frames from a ground-truth ``H×W×T`` label array, per label.

    Args:
        strategy: ``"first"`` or ``"middle"`` (see the module docstring).
        shots: number of support frames per label.
        label_values: labels to include; default every label present.
    """
    if strategy not in STRATEGIES:
        raise SupportError(f"unknown support strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    labels = np.asarray(labels)
    values = sorted(int(v) for v in np.unique(labels) if v) if label_values is None else sorted(label_values)
    masks: dict[int, dict[int, np.ndarray]] = {}
    for value in values:
        present = [i for i in range(labels.shape[2]) if (labels[:, :, i] == value).any()]
        if not present:
            continue
        anchor = 0 if strategy == "first" else len(present) // 2
        masks[value] = {i: labels[:, :, i] == value for i in spread_frames(present, anchor, shots)}
    return SupportSet(masks, tuple(labels.shape))  # type: ignore[arg-type]


def query_frames(support: SupportSet, label: int) -> list[int]:
    """Frames to be predicted (and scored) for ``label``: every frame not painted for it."""
    painted = set(support.frames_of(label))
    return [i for i in range(support.shape[2]) if i not in painted]


def labels_from_probabilities(probabilities: Mapping[int, np.ndarray], threshold: float = 0.5) -> np.ndarray:
    """Combine per-label foreground probabilities (each ``H×W×T``) into one uint8 label array.

    A voxel takes the label of highest probability when that probability is ≥ ``threshold``.
    """
    items = sorted(probabilities.items())
    if not items:
        raise SupportError("no labels to combine")
    # one label at a time (no L×H×W×T stack): a later label wins only where it is strictly higher,
    # so ties go to the smaller label value, as with argmax over the sorted stack
    best = np.array(items[0][1], dtype=np.float32, copy=True)
    out = np.full(best.shape, items[0][0], dtype=np.uint8)
    for label, prob in items[1:]:
        higher = prob > best
        out[higher] = label
        np.maximum(best, prob, out=best)
    out[best < threshold] = 0
    return out


def _distance_to(t: int):
    """Sort key of a frame by its distance to ``t`` (ties: the earlier frame first)."""
    return lambda f: (abs(f - t), f)


def nearest_first(frames: Sequence[int], t: int) -> list[int]:
    """``frames`` ordered by distance to ``t``, nearest first (ties: the earlier frame first)."""
    return sorted(frames, key=_distance_to(t))


def nearest(frames: Sequence[int], t: int) -> int:
    """The frame of ``frames`` nearest to ``t`` (ties go to the earlier frame)."""
    return min(frames, key=_distance_to(t))


def neighbours(frames: Sequence[int], t: int) -> tuple[int | None, int | None]:
    """The nearest support frames at or before ``t`` and at or after ``t`` (``None`` if absent)."""
    left = max((f for f in frames if f <= t), default=None)
    right = min((f for f in frames if f >= t), default=None)
    return left, right


def outward_runs(judged: Iterable[int], painted: Sequence[int], t: int) -> list[int]:
    """The frames of ``judged`` outside the span of the ``painted`` frames from which every frame out
    to the cine's end (away from the painted frames) is in ``judged`` too, ascending.

    The rule of a structure that leaves the cine and does not come back (the presence check's
    ``absent_outward``): in a slice stack an organ ends once, beyond its first or last slice; a frame
    between two painted frames, or one with a frame judged present farther out, keeps its mask.
    """
    judged = set(judged)
    start = 0                                   # frames 0 .. start − 1: the judged run from frame 0
    while start < min(painted) and start in judged:
        start += 1
    end = t                                     # frames end .. t − 1: the judged run to the last frame
    while end - 1 > max(painted) and end - 1 in judged:
        end -= 1
    return list(range(start)) + list(range(end, t))
