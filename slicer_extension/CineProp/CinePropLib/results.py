"""The result of one propagation, read from the server's answer. Pure numpy.

The ``cineprop`` infer task answers a label file (``I×J×T`` uint8, the cine's geometry) and a JSON
part. Keys read here (the task's documented output, ``docs/monailabel.md``), each optional:

* ``confidence``: ``T`` floats in [0, 1], 1 on support frames;
* ``flagged``: query frames to review (else: confidence below the threshold);
* ``support_frames``: the frames used as support;
* ``label_names``: ``{name: value}``;
* ``latencies`` / ``timings`` / ``seconds``: time spent.

MONAI Label's ``BasicInferTask`` nests a task's own dict under ``result``; both places are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from CinePropLib.conversions import ConversionError, as_labels

#: Frames below this confidence are flagged when the server does not say which.
DEFAULT_FLAG_THRESHOLD = 0.5


@dataclass
class PropagationResult:
    """Labels and per-frame review data of one propagation.

    Attributes:
        labels: ``I×J×T`` uint8, support label values kept.
        confidence: ``T`` float32 in [0, 1], or ``None`` when the server sent none.
        flagged: query frames to review, ascending.
        support_frames: frames the propagation used as support.
        label_names: ``{name: value}`` from the server.
        seconds: server time for the propagation, when reported.
        details: the whole JSON part, for display and debugging.
    """

    labels: np.ndarray
    confidence: np.ndarray | None
    flagged: list[int]
    support_frames: list[int]
    label_names: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[2])

    def rows(self) -> list[tuple[int, str, str]]:
        """Table rows ``(frame, confidence text, role)`` with role ``support`` / ``flagged`` / ``""``."""
        support, flagged = set(self.support_frames), set(self.flagged)
        rows = []
        for t in range(self.num_frames):
            conf = "—" if self.confidence is None else f"{float(self.confidence[t]):.2f}"
            role = "support" if t in support else ("flagged" if t in flagged else "")
            rows.append((t, conf, role))
        return rows

    def summary(self) -> str:
        """One line for the status label."""
        parts = [f"{self.num_frames} frames", f"support {_frames(self.support_frames)}"]
        parts.append(f"{len(self.flagged)} flagged" + (f" ({_frames(self.flagged)})" if self.flagged else ""))
        if self.confidence is not None:
            parts.append(f"mean confidence {float(np.mean(self.confidence)):.2f}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts)


def _frames(frames: list[int]) -> str:
    return ", ".join(str(t) for t in frames[:8]) + (" …" if len(frames) > 8 else "") if frames else "none"


def _lookup(details: Mapping[str, Any], *keys: str) -> Any:
    nested = details.get("result") if isinstance(details.get("result"), Mapping) else {}
    for key in keys:
        for source in (details, nested):
            if key in source and source[key] is not None:
                return source[key]
    return None


def _seconds(details: Mapping[str, Any]) -> float | None:
    value = _lookup(details, "seconds", "timings", "latencies")
    if isinstance(value, Mapping):
        value = value.get("total", value.get("seconds", value.get("infer")))
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


def parse_result(labels: np.ndarray, details: Mapping[str, Any],
                 threshold: float = DEFAULT_FLAG_THRESHOLD) -> PropagationResult:
    """Combine the label array (``I×J×T``) and the JSON part of an infer answer.

    Raises:
        ConversionError: labels that are not ``I×J×T`` integers, or a confidence list whose
            length is not ``T``.
    """
    labels = as_labels(labels)
    if labels.ndim != 3:
        raise ConversionError(f"the result must be I×J×T, got shape {labels.shape}")
    frames = labels.shape[2]
    confidence = _lookup(details, "confidence", "frame_confidence")
    conf = None
    if confidence is not None:
        conf = np.asarray(confidence, dtype=np.float32).ravel()
        if conf.shape[0] != frames:
            raise ConversionError(f"the server sent {conf.shape[0]} confidences for {frames} frames")
        conf = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
    support = sorted({int(t) for t in (_lookup(details, "support_frames", "support") or []) if 0 <= int(t) < frames})
    flagged_raw = _lookup(details, "flagged", "flagged_frames")
    if flagged_raw is None:
        flagged_raw = [] if conf is None else [t for t in range(frames) if conf[t] < threshold]
    flagged = sorted({int(t) for t in flagged_raw if 0 <= int(t) < frames} - set(support))
    names = _lookup(details, "label_names") or {}
    label_names = {str(k): int(v) for k, v in names.items()} if isinstance(names, Mapping) else {}
    return PropagationResult(labels, conf, flagged, support, label_names, _seconds(details), dict(details))
