"""Batch infer (``POST /batch/infer/cineprop``): propagate every study that has a saved support.

MONAI Label's :class:`BatchInferTask` runs ``app.infer`` per image with ``save_label`` true, so each
result is stored under ``label_tag`` (default ``original``) and progress (``i / n``) goes to the
server log. This subclass

* keeps only studies with a saved support (the others are reported as skipped, not failed);
* runs on CPU without the ``"multi_gpu": false`` body MONAI Label otherwise needs there
  (its default divides by the number of GPUs);
* lets one failing study report its error instead of aborting the whole batch.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.batch_infer import BatchInferTask

from lib.configs.settings import AppSettings
from lib.study_records import saved_support

logger = logging.getLogger(__name__)


class CinepropBatchInfer(BatchInferTask):
    def __init__(self, settings: AppSettings):
        self.settings = settings
        self._skipped: list[str] = []

    def get_images(self, request: dict, datastore: Datastore) -> list[str]:
        ids = list(super().get_images(request, datastore))
        keep = [i for i in ids if saved_support(datastore, i, self.settings.support_tags)]
        self._skipped = sorted(set(ids) - set(keep))
        if self._skipped:
            logger.info(f"cineprop batch: skipping {len(self._skipped)} studies without a saved support "
                        f"(tags {', '.join(self.settings.support_tags)}): {', '.join(self._skipped)}")
        return keep

    def __call__(self, request: dict, datastore: Datastore, infer: Callable) -> dict:
        request = dict(request)
        if not torch.cuda.is_available() and request.get("multi_gpu", True):
            logger.info("cineprop batch: no CUDA device; running on the CPU (multi_gpu false)")
            request["multi_gpu"] = False
            request["device"] = "cpu"

        def infer_one(req: dict, ds: Datastore) -> dict:
            try:
                return infer(req, ds)
            except HTTPException as exc:
                logger.warning(f"cineprop batch: {req.get('image')}: {exc.detail}")
                return {"error": str(exc.detail)}
            except Exception as exc:  # noqa: BLE001 - one broken study must not abort the batch
                logger.exception(f"cineprop batch: {req.get('image')}: failed")
                return {"error": f"{type(exc).__name__}: {exc}"}

        result = super().__call__(request, datastore, infer_one)
        failed = sorted(i for i, r in result.items() if isinstance(r, dict) and r.get("error"))
        for image_id in self._skipped:
            result[image_id] = {"skipped": "no saved support"}
        logger.info(f"cineprop batch: {len(result) - len(failed) - len(self._skipped)} labelled, "
                    f"{len(failed)} failed, {len(self._skipped)} skipped")
        return result
