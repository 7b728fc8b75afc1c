"""Validation by real propagation: first-frame, 1-shot support on held-out cines, scored as in
``cineprop evaluate`` (mean per-frame Dice over query frames, per label, then averaged).

Training chooses and keeps checkpoints by this score, so by default it measures the network and its
memory alone (:data:`NETWORK_ONLY`): the default session's carried masks do not depend on the
weights and, at ``flow_weight`` 0.9, would make nine tenths of every probability the same for
every checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

from cineprop.io.cine import Cine
from cineprop.metrics import score_label, summarise
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import query_frames, select_support
from cineprop.training.data import CineSet

#: The session settings of validation: the default ones without the flow blend.
NETWORK_ONLY = SessionConfig(flow_weight=0.0)


@torch.inference_mode()
def validate_cines(model: torch.nn.Module, cines: CineSet, strategy: str = "first", shots: int = 1,
                   config: SessionConfig = NETWORK_ONLY) -> dict:
    """Propagate every cine of ``cines`` and return ``mean_dice`` and ``per_label`` Dice."""
    model.eval()
    per_sequence = []
    for name, frames, labels in zip(cines.ids, cines.frames, cines.labels):
        support = select_support(labels, strategy, shots)
        session = PropagationSession(model, Cine(frames, name=name), config)
        session.set_supports(support)
        result = session.propagate()
        per_sequence.append({"labels": {str(k): score_label(result.labels == k, labels == k,
                                                             query_frames(support, k))
                                        for k in support.labels}})
    mean, per_label = summarise(per_sequence)
    return {"mean_dice": float(mean), "per_label": {k: round(float(v["dice"]), 4) for k, v in per_label.items()},
            "sequences": len(per_sequence), "finite": bool(np.isfinite(mean))}
