"""Infer task ``cineprop``: propagate the painted support frames of a cine to every other frame.

Request (MONAI Label ``POST /infer/cineprop?image=<id>``, multipart):

* the image: a datastore id (``?image=``), an uploaded ``file`` or a session;
* the support: the uploaded ``label`` (a label volume of the image's shape; its painted frames are
  the support), else the study's saved support in the datastore (see :mod:`lib.study_records`);
* optional ``params`` JSON: see :class:`lib.configs.settings.InferOptions`.

Result: a label volume with the image's exact geometry (``result_extension``, uint8) and JSON with
per-frame ``confidence``, ``flagged`` frames, ``support_frames``, ``label_names`` and
``latencies``, ``session_cache`` (live sessions kept, hits, evictions; each cine says whether it
``reused_session``). The task is declared of type ``scribbles`` because the stock MONAI Label Slicer
module uploads the user's painted segmentation as ``label`` only for that type (segmentation models
get just the image id); any REST client can post ``label`` the same way.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from cineprop.errors import SupportError
from cineprop.io import write_label
from lib.configs.settings import SUPPORT_TAG, AppSettings, InferOptions, RequestError
from lib.study_records import saved_support
from lib.errors import http_errors
from lib.service import PropagationService, VolumeResult, frames_report

logger = logging.getLogger(__name__)

#: Request key under which the app passes the datastore id of the image (``None`` for uploads).
IMAGE_ID = "cineprop_image_id"


class CinepropInfer(InferTask):
    """Few-shot propagation of painted frames (see the module docstring)."""

    def __init__(self, service: PropagationService, settings: AppSettings, datastore: Datastore):
        super().__init__(
            type=InferType.SCRIBBLES,
            labels=list(settings.labels),
            dimension=3,
            description=(f"Propagate the painted frames of a cine to every frame ({settings.method}); "
                         "upload the painted segmentation as 'label' or save one with tag 'support'"),
            # Shown as the editable "Options" table in Slicer and sent back as request params.
            config={"support_frames": "", "slice_index": "", "flag_threshold": settings.flag_threshold,
                    "save_support": False},
        )
        self.service = service
        self.settings = settings
        self.datastore = datastore

    def is_valid(self) -> bool:
        # No weights file in model/ is needed (the method brings its own); without this MONAI Label
        # would hide the task from /info.
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict]:
        start = time.perf_counter()
        image = request.get("image")
        image_id = request.get(IMAGE_ID)
        uploaded = request.get("label")
        aliases = {str(uploaded or ""): "uploaded label", str(image or ""): f"image {image_id or '(upload)'}"}
        with http_errors(aliases):
            options = InferOptions.from_request(request, self.settings)
            if not isinstance(image, str) or not os.path.isfile(image):
                raise HTTPException(status_code=404, detail=f"image {image_id or image!r} not found")
            if options.save_support and not image_id:
                raise RequestError("save_support: the image is not a datastore study (uploaded file or session)")
            support, source = self._support(uploaded, image_id)
            result = self.service.propagate_file(image, support, options.support_frames, options.slice_index,
                                                 options.ignored_labels)
            read_and_propagate = time.perf_counter()
            out = self._write(result, options.result_extension)
            saved = False
            if options.save_support and source == "upload":
                self._save_support(image_id, result, request.get("client_id"))
                saved = True
        done = time.perf_counter()
        propagate = result.seconds
        report = frames_report(result, options.flag_threshold)
        values = sorted({int(v) for v in np.unique(result.labels) if v} | {v for r in result.cines
                                                                          for v in r.support.labels})
        info = {
            **self.service.describe(),
            "image": image_id,
            "shape": list(result.volume.shape),
            "support_source": source,
            **report,
            "label_names": {options.label_names.get(v) or self.settings.label_name(v): v for v in values},
            "saved_support": saved,
            "session_cache": self.service.sessions.stats(),
            "latencies": {"read": round(read_and_propagate - start - propagate, 3), "propagate": round(propagate, 3),
                          "write": round(done - read_and_propagate, 3), "total": round(done - start, 3)},
        }
        logger.info(f"cineprop infer {image_id or '(upload)'}: {len(result.cines)} cine(s), support "
                    f"{report['support_frames']} from {source}, flagged {report['flagged'] or 'none'}, "
                    f"{done - start:.2f} s")
        return out, info

    def _support(self, uploaded: Any, image_id: str | None) -> tuple[str, str]:
        """The support label file and where it came from (``upload`` or ``datastore:<tag>``)."""
        if uploaded:
            return str(uploaded), "upload"
        found = saved_support(self.datastore, image_id, self.settings.support_tags) if image_id else None
        if found is None:
            where = (f"study {image_id!r} has no saved support (tags: {', '.join(self.settings.support_tags)})"
                     if image_id else "the image was uploaded, so no saved support can exist")
            raise SupportError(f"no support: upload a label volume with the painted frames as 'label'; {where}")
        path, tag = found
        return path, f"datastore:{tag}"

    @staticmethod
    def _write(result: VolumeResult, extension: str) -> str:
        """Write the result to a temporary file (MONAI Label sends it, then deletes it)."""
        fd, out = tempfile.mkstemp(prefix="cineprop-", suffix=extension)
        os.close(fd)
        try:
            write_label(out, result.labels, result.volume)
        except BaseException:
            os.unlink(out)
            raise
        return out

    def _save_support(self, image_id: str, result: VolumeResult, client_id: Any) -> None:
        """Store the support frames actually used under the ``support`` tag (after a successful propagation)."""
        fd, tmp = tempfile.mkstemp(prefix="cineprop-support-", suffix=".nii.gz")
        os.close(fd)
        try:
            write_label(tmp, result.support_only(), result.volume)
            frames = {r.cine.name: r.support.frames for r in result.cines}
            self.datastore.save_label(image_id, tmp, SUPPORT_TAG, {"source": "cineprop infer upload",
                                                                   "support_frames": frames,
                                                                   "client_id": client_id})
        finally:
            os.unlink(tmp)
