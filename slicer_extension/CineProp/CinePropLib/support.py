"""Which frames are support (painted or corrected by the user) and which are query. Pure numpy.

The first propagation's support is every frame the user painted. After a propagation the
segmentation holds a label on every frame, so "painted" no longer means "support": a frame is
support when the user painted it before, changed it since the last result (a correction), or
confirmed it as correct. :class:`SupportTracker` keeps that state for one cine; all label arrays
are ``I×J×T`` (frames on the last axis).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from CinePropLib.conversions import ConversionError, as_labels


def painted_frames(labels: np.ndarray) -> list[int]:
    """Frames (last axis) with at least one non-zero voxel."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ConversionError(f"labels must be I×J×T, got shape {labels.shape}")
    return [int(t) for t in np.flatnonzero(labels.reshape(-1, labels.shape[2]).any(axis=0))]


def changed_frames(current: np.ndarray, previous: np.ndarray) -> list[int]:
    """Frames where ``current`` differs from ``previous`` (same ``I×J×T`` shape)."""
    if current.shape != previous.shape:
        raise ConversionError(f"label shapes differ: {current.shape} vs {previous.shape}")
    diff = (np.asarray(current) != np.asarray(previous)).reshape(-1, current.shape[2]).any(axis=0)
    return [int(t) for t in np.flatnonzero(diff)]


def support_label(labels: np.ndarray, frames: Iterable[int]) -> np.ndarray:
    """``labels`` with every frame outside ``frames`` cleared: what is uploaded as the support."""
    labels = as_labels(labels)
    keep = np.zeros(labels.shape[2], dtype=bool)
    for t in frames:
        if not 0 <= int(t) < labels.shape[2]:
            raise ConversionError(f"frame {t} is outside 0..{labels.shape[2] - 1}")
        keep[int(t)] = True
    out = labels.copy()
    out[:, :, ~keep] = 0
    return out


def next_flagged(flagged: Sequence[int], current: int, num_frames: int) -> int | None:
    """The first flagged frame after ``current``, wrapping round; ``None`` when nothing is flagged."""
    frames = sorted({int(t) for t in flagged if 0 <= int(t) < num_frames})
    if not frames:
        return None
    later = [t for t in frames if t > current]
    return later[0] if later else frames[0]


class SupportTracker:
    """Support bookkeeping for one cine of ``num_frames`` frames."""

    def __init__(self, num_frames: int) -> None:
        self.num_frames = int(num_frames)
        self.result: np.ndarray | None = None   # the last propagated labels, I×J×T uint8
        self.support: set[int] = set()          # support frames of the last propagation
        self.confirmed: set[int] = set()        # query frames the user accepted as correct

    def frames(self, labels: np.ndarray) -> list[int]:
        """The support frames for propagating from ``labels`` (the user's current segmentation).

        Before any result: the painted frames. After one: the earlier support, the frames changed
        since the result, and the confirmed frames, keeping only frames that hold a label.
        """
        labels = as_labels(labels)
        if labels.ndim != 3 or labels.shape[2] != self.num_frames:
            raise ConversionError(f"labels must be I×J×{self.num_frames}, got shape {labels.shape}")
        painted = set(painted_frames(labels))
        if self.result is None or self.result.shape != labels.shape:
            return sorted(painted)
        chosen = self.support | set(changed_frames(labels, self.result)) | self.confirmed
        return sorted(chosen & painted)

    def confirm(self, frame: int) -> None:
        """Accept a propagated frame as correct: it becomes support for the next propagation."""
        if not 0 <= int(frame) < self.num_frames:
            raise ConversionError(f"frame {frame} is outside 0..{self.num_frames - 1}")
        self.confirmed.add(int(frame))

    def record(self, result: np.ndarray, support: Iterable[int]) -> None:
        """Remember a propagation's labels and support frames."""
        self.result = as_labels(result).copy()
        self.support = {int(t) for t in support}
        self.confirmed -= self.support
