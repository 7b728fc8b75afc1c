"""What the app reads from and writes to MONAI Label's datastore.

* Saved supports: a study's support is the label stored under the first of
  ``AppSettings.support_tags`` (default ``support``, then ``final``) that the study has. In the local
  datastore that is ``STUDIES/labels/<tag>/<image id>.nii.gz`` (or ``.nrrd``).
* Scores: the ``cineprop_confidence`` scoring method stores a summary in the image's info under
  :data:`SCORE_KEY`; the ``cineprop_uncertain`` strategy reads it. A score records what it was
  computed from (:func:`fingerprint`) so an unchanged study is not propagated again.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from monailabel.interfaces.datastore import Datastore

#: Key of the cineprop score in a datastore image's info.
SCORE_KEY = "cineprop"


def saved_support(datastore: Datastore, image_id: str, tags: Iterable[str]) -> tuple[str, str] | None:
    """``(label file, tag)`` of the study's saved support, or ``None`` when it has none."""
    labels = datastore.get_labels_by_image_id(image_id)
    for tag in tags:
        if tag in labels:
            path = datastore.get_label_uri(labels[tag], tag)
            if path and os.path.isfile(path):
                return path, tag
    return None


def _stat(path: str) -> list:
    stat = os.stat(path)
    return [stat.st_mtime_ns, stat.st_size]


def fingerprint(image: str, support: str, tag: str, service: dict, threshold: float) -> dict:
    """What a score depends on: the image and support files, the method/checkpoint and the threshold."""
    checkpoint = service.get("checkpoint")
    return {"image": _stat(image), "support": [tag, *_stat(support)], "method": service.get("method"),
            "checkpoint": [checkpoint, *_stat(checkpoint)] if checkpoint else None, "flag_threshold": threshold}


def read_score(datastore: Datastore, image_id: str) -> dict[str, Any] | None:
    """The stored score of a study (``None`` when never scored or when scoring it failed)."""
    score = datastore.get_image_info(image_id).get(SCORE_KEY)
    return score if isinstance(score, dict) and "mean_confidence" in score else None


def write_score(datastore: Datastore, image_id: str, score: dict[str, Any]) -> None:
    """Store a study's score, re-reading the datastore index first.

    Scoring usually runs in a subprocess while the server keeps writing the same index file
    (``datastore_v2.json``); reloading right before the update keeps the server's recent changes.
    """
    datastore.refresh()
    datastore.update_image_info(image_id, {SCORE_KEY: score})
