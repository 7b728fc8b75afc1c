"""Active-learning strategy ``cineprop_uncertain``: the study the propagation is least sure about.

Among studies without a ``final`` label, the next one is the scored study (see
``cineprop_confidence``) with the lowest mean query-frame confidence; ties go to the one with more
flagged frames, then to the smaller id. Studies never scored (no support yet) come after every
scored one, the one served longest ago first. Returns ``None`` (MONAI Label answers ``{}``) when
every study has a final label.
"""

from __future__ import annotations

import logging

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.study_records import read_score

logger = logging.getLogger(__name__)


class CinepropUncertain(Strategy):
    """Lowest mean confidence first, then most flagged frames (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("Next study: lowest propagation confidence, then most flagged frames, among studies "
                         "without a final label (scores from the cineprop_confidence scoring method)")

    def __call__(self, request: dict, datastore: Datastore) -> dict | None:
        datastore.refresh()  # scores may have been written by a scoring subprocess
        candidates = sorted(datastore.get_unlabeled_images())
        if not candidates:
            return None
        scores = {i: read_score(datastore, i) for i in candidates}
        scored = [(s["mean_confidence"], -int(s.get("flagged", 0)), i) for i, s in scores.items() if s]
        unscored = [i for i, s in scores.items() if not s]
        if scored:
            confidence, minus_flagged, image_id = min(scored)
            logger.info(f"cineprop_uncertain: {image_id} (mean confidence {confidence:.3f}, {-minus_flagged} "
                        f"flagged) among {len(scored)} scored, {len(unscored)} unscored studies")
            return {"id": image_id, "weight": round(1.0 - confidence, 4), "mean_confidence": confidence,
                    "flagged": -minus_flagged, "scored": len(scored), "unscored": len(unscored)}
        name = request.get("strategy", "cineprop_uncertain")

        def last_served(image_id: str) -> int:
            return int(datastore.get_image_info(image_id).get("strategy", {}).get(name, {}).get("ts", 0))

        image_id = min(unscored, key=lambda i: (last_served(i), i))
        logger.info(f"cineprop_uncertain: no study scored yet; {image_id} (served longest ago)")
        return {"id": image_id, "weight": 0.0, "scored": 0, "unscored": len(unscored)}
