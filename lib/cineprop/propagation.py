"""What every propagation method returns, and the interface every method implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cineprop.io.cine import Cine
from cineprop.support import SupportSet, labels_from_probabilities

#: Frames whose confidence is below this are flagged for review (overridable per call).
DEFAULT_FLAG_THRESHOLD = 0.5


@dataclass
class Propagation:
    """The result of propagating a support through one cine.

    Attributes:
        labels: ``H×W×T`` uint8, the support's label values (0 background). Support frames carry
            exactly what was painted.
        probabilities: ``{label: H×W×T float32 in [0, 1]}`` foreground probability per label.
        confidence: ``T`` float32 in [0, 1]; 1 on support frames.
        support_frames: frames painted for at least one label.
        seconds: wall time of the propagation.
        details: method-specific extras (ROI, cache statistics, ...).
        flag_threshold: the method's confidence threshold for flagging frames.
    """

    labels: np.ndarray
    probabilities: dict[int, np.ndarray]
    confidence: np.ndarray
    support_frames: list[int]
    seconds: float = 0.0
    details: dict = field(default_factory=dict)
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD

    def flagged(self, threshold: float | None = None) -> list[int]:
        """Query frames whose confidence is below ``threshold`` (default: the method's own threshold)."""
        threshold = self.flag_threshold if threshold is None else threshold
        support = set(self.support_frames)
        return [i for i, c in enumerate(self.confidence.tolist()) if c < threshold and i not in support]


class Propagator(Protocol):
    """A propagation method: copy, flow, demons, model, relearn.

    Implementations are built by :func:`cineprop.methods.build_propagator`.
    """

    name: str

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        """Segment every frame of ``cine`` from ``support``."""
        ...


def finish(probabilities: dict[int, np.ndarray], confidence: np.ndarray, support: SupportSet,
           seconds: float, details: dict | None = None,
           flag_threshold: float = DEFAULT_FLAG_THRESHOLD) -> Propagation:
    """Build a :class:`Propagation`: combine labels and paste the painted support frames back."""
    labels = labels_from_probabilities(probabilities)
    for frame in support.frames:
        painted = support.label_array(frame)
        # Labels painted on this frame are exact; labels not painted here keep their prediction.
        for label in support.labels:
            if frame in support.masks[label]:
                labels[:, :, frame][labels[:, :, frame] == label] = 0
        labels[:, :, frame][painted > 0] = painted[painted > 0]
    confidence = np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0)
    confidence[support.frames] = 1.0
    return Propagation(labels, probabilities, confidence, support.frames, seconds, details or {}, flag_threshold)
