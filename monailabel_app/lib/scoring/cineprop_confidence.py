"""Scoring method ``cineprop_confidence``: how sure is the propagation on each unfinished study?

For every study without a ``final`` label (``images: "all"`` to include those too) that has a
saved support, propagate it and store in the image's info (key ``cineprop``, see
:mod:`lib.study_records`): mean and minimum confidence over the query frames, the number of flagged
frames and what the score was computed from. A study whose image, support, method, checkpoint and
threshold did not change is skipped unless ``force`` is true, so the automatic runs MONAI Label
starts (at server start, after each "next sample" and after training) cost little.
Studies without a support are listed as such; the ``cineprop_uncertain`` strategy reads the scores.

Request params (``POST /scoring/cineprop_confidence`` JSON body): ``images`` (``unlabeled`` |
``all``), ``force`` (bool), ``flag_threshold`` (0..1, default ``--conf flag_threshold``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

from filelock import FileLock, Timeout
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from cineprop.errors import CheckpointError, CinepropError
from lib.configs.settings import AppSettings, RequestError, parse_bool, parse_float
from lib.study_records import SCORE_KEY, fingerprint, saved_support, write_score
from lib.errors import http_errors
from lib.service import PropagationService, scores

logger = logging.getLogger(__name__)


class CinepropConfidence(ScoringMethod):
    """Propagate each unfinished study from its saved support and store confidence scores."""

    def __init__(self, service: PropagationService, settings: AppSettings, lock_dir: str | None = None):
        super().__init__("Propagate every study without a final label from its saved support; store mean/min "
                         "confidence and flagged frames (read by the cineprop_uncertain strategy)")
        self.service = service
        self.settings = settings
        # One scoring run at a time per studies folder, also across server workers and subprocesses.
        self.lock_path = os.path.join(lock_dir or tempfile.gettempdir(), ".cineprop-scoring.lock")

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        with http_errors():
            images = str(request.get("images") or "unlabeled")
            if images not in ("unlabeled", "all"):
                raise RequestError(f"images: expected 'unlabeled' or 'all', got {images!r}")
            force = parse_bool(request.get("force", False), "force")
            threshold = request.get("flag_threshold")
            threshold = (self.settings.flag_threshold if threshold in (None, "")
                         else parse_float(threshold, "flag_threshold", 0.0, 1.0))
        try:
            with FileLock(self.lock_path, timeout=0):
                return self._score(datastore, images, force, threshold)
        except Timeout:
            logger.info("cineprop_confidence: another scoring run is in progress; skipped")
            return {"skipped": "another cineprop_confidence run is in progress"}

    def _score(self, datastore: Datastore, images: str, force: bool, threshold: float) -> dict:
        start = time.perf_counter()
        self.service.propagator()  # build first, so describe() names the method actually used
        datastore.refresh()
        ids = sorted(datastore.get_unlabeled_images() if images == "unlabeled" else datastore.list_images())
        out: dict = {"scored": {}, "up_to_date": [], "no_support": [], "failed": {}}
        for n, image_id in enumerate(ids, start=1):
            found = saved_support(datastore, image_id, self.settings.support_tags)
            if found is None:
                out["no_support"].append(image_id)
                continue
            support, tag = found
            image = datastore.get_image_uri(image_id)
            stamp = fingerprint(image, support, tag, self.service.describe(), threshold)
            old = datastore.get_image_info(image_id).get(SCORE_KEY)
            if not force and isinstance(old, dict) and old.get("fingerprint") == stamp:
                out["up_to_date"].append(image_id)
                continue
            try:
                result = self.service.propagate_file(image, support)
                score = {**scores(result, threshold), "support": f"datastore:{tag}",
                         "method": self.settings.method}
                out["scored"][image_id] = score
                what = f"mean confidence {score['mean_confidence']:.3f}, {score['flagged']} flagged"
            except CheckpointError:
                raise  # every study would fail the same way
            except CinepropError as exc:
                score = {"error": str(exc)}
                out["failed"][image_id] = str(exc)
                what = f"failed: {exc}"
            write_score(datastore, image_id, {**score, "fingerprint": stamp, "ts": int(time.time())})
            logger.info(f"cineprop_confidence: {n}/{len(ids)} {image_id}: {what}")
        logger.info(f"cineprop_confidence: scored {len(out['scored'])}, up to date {len(out['up_to_date'])}, "
                    f"no support {len(out['no_support'])}, failed {len(out['failed'])} "
                    f"in {time.perf_counter() - start:.1f} s")
        return out
