"""Rules every propagation path shares: how much a shot counts, which shots count, how sure a prediction is.

The session (stage 1), two-stage inference and relearning (stage 2), episodic training and the
registration baselines all weigh and choose shots and score probability maps the same way; this
module is the one place those rules are written.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: frames over which a shot's weight falls by ``e`` (``SessionConfig.temporal_scale``, training episodes)
TEMPORAL_SCALE = 3.0


def shot_weight(distance: float, temporal_scale: float = TEMPORAL_SCALE, floor: float = 0.0) -> float:
    """Weight of a shot ``distance`` frames away from the query: ``max(exp(−|d|/scale), floor)``.

    A floor > 0 keeps a painted frame in every prediction however far away it is (re-anchoring,
    as SAM 2 keeps its conditioning frames), so memory cannot take over completely on long clips.
    Memory shots (earlier predictions) take no floor.
    """
    return max(float(np.exp(-abs(distance) / temporal_scale)), floor)


def useful_shots(frame_idx: int, nearest_first: Sequence[int], max_shots: int,
                 temporal_scale: float = TEMPORAL_SCALE, floor: float = 0.0, cutoff: float = 0.0) -> list[int]:
    """The painted frames a prediction at ``frame_idx`` takes as shots: the first ``max_shots`` of
    ``nearest_first``, less those whose :func:`shot_weight` is below ``cutoff`` × the nearest one's.

    A shot that small changes the prediction by a fraction of a percent, yet it ties the frame to
    that painted frame: with the cutoff, painting a frame far away leaves this frame's prediction as
    it was, so a correction re-propagates only the frames near it (``SessionConfig.shot_cutoff``).
    """
    chosen = list(nearest_first[:max_shots])
    if not chosen:
        return chosen
    top = shot_weight(chosen[0] - frame_idx, temporal_scale, floor)
    return [f for f in chosen if shot_weight(f - frame_idx, temporal_scale, floor) >= cutoff * top]


def certainty(prob: np.ndarray) -> float:
    """How crisp a foreground probability map is: mean ``|2p − 1|`` where ``p > 0.05``.

    Pixels that are confidently background everywhere do not count, so a small object is not
    "certain" just because most of the frame is empty. 1 for an empty or a crisp (0/1) map.
    """
    region = prob > 0.05
    return float(np.abs(2.0 * prob[region] - 1.0).mean()) if region.any() else 1.0
