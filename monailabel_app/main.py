"""MONAI Label app ``cineprop``: few-shot propagation of painted frames through medical cines.

A thin adapter over the installed ``cineprop`` package (never imported as ``lib``: MONAI Label owns
that name inside apps). MONAI Label rebuilds this app in every train, batch-infer and scoring
subprocess, so construction only parses settings and creates task objects; the propagator is
built on first use. Options: ``--conf KEY VALUE`` (see ``lib/configs/settings.py``, README.md).
"""

import logging
import os
from typing import Callable, Dict

from fastapi import HTTPException
from monailabel.config import settings as monailabel_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.sessions import Sessions

import cineprop
from cineprop.methods import available
from lib.auth import accept_signed_tokens
from lib.configs.cineprop import CinepropConfig
from lib.configs.security import SecuritySettings
from lib.configs.settings import CONF_KEYS, AppSettings
from lib.infers.batch import CinepropBatchInfer
from lib.infers.cineprop import IMAGE_ID
from lib.lifetime import end_with_server, mark_server
from lib.nonblocking import RESERVED_PARAMS, offload_infer_route
from lib.service import PropagationService
from lib.datastore import SESSIONS, CinepropDatastore
from lib.surface import block_routes, restrict_origins
from lib.uploads import install_upload_routes

logger = logging.getLogger(__name__)


class CinepropApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]):
        self.settings = AppSettings.from_conf(conf, available())
        if self.settings.note:
            logger.warning(f"cineprop: {self.settings.note}")
        for key in self.settings.unknown_keys:
            logger.warning(f"cineprop: ignoring unknown --conf {key!r}; known: {', '.join(CONF_KEYS)}")
        self.security = SecuritySettings.from_conf(conf, monailabel_settings.MONAI_LABEL_CORS_ORIGINS)
        end_with_server()  # only in train/batch/scoring subprocesses (lib/lifetime.py)
        self.model_dir = os.path.join(app_dir, "model")
        self.service = PropagationService(self.settings, self.model_dir)
        self.task_config = CinepropConfig()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="cineprop",
            description="Few-shot segmentation of cines: paint a few frames, propagate to the rest",
            version=cineprop.__version__,
            labels=list(self.settings.labels) or None,
        )
        logger.info(f"cineprop: method {self.settings.method!r}, checkpoint {self.service.describe()['checkpoint']}")

    def init_datastore(self) -> Datastore:
        # A local studies folder gets the cineprop datastore: clinical inputs converted on arrival,
        # bad uploads and labels refused with a 4xx (lib/datastore.py). Remote datastores stay MONAI Label's.
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return CinepropDatastore(self.studies, limits=self.security.limits,
                                 extensions=monailabel_settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                                 auto_reload=monailabel_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                 read_only=monailabel_settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def _load_sessions(self, load: bool = False):
        # MONAI Label keeps sessions in ~/.cache/monailabel/sessions, shared by every server of the
        # user; here they stay in the studies folder (a hidden sub-folder MONAI Label never lists).
        if not load or monailabel_settings.MONAI_LABEL_SESSION_PATH or not os.path.isdir(self.studies):
            return super()._load_sessions(load)
        return Sessions(os.path.join(self.studies, SESSIONS), monailabel_settings.MONAI_LABEL_SESSION_EXPIRY)

    def init_infers(self) -> Dict[str, InferTask]:
        # The first init_* MONAI Label calls after creating the datastore.
        lock_dir = self.studies if os.path.isdir(self.studies) else None
        self.task_config.init("cineprop", self.model_dir, self.conf, None, settings=self.settings,
                              service=self.service, datastore=self.datastore(), lock_dir=lock_dir)
        return self.task_config.infer()

    def init_trainers(self) -> Dict[str, TrainTask]:
        return self.task_config.trainer()  # cineprop_relearn, cineprop_image (lib/trainers)

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), **self.task_config.strategy()}

    def init_scoring_methods(self) -> Dict[str, ScoringMethod]:
        return self.task_config.scoring_method()

    def init_batch_infer(self) -> Callable:
        return CinepropBatchInfer(self.settings)

    def batch_infer(self, request, datastore=None):
        # Batch params are merged into every image's request: an "image"/"label" there would be a server path.
        reserved = sorted(set(request) & set(RESERVED_PARAMS) - {"model"})
        if reserved:
            raise HTTPException(status_code=400, detail=f"batch params: {', '.join(reserved)} cannot be set; "
                                                        "the batch infers each study with its saved support")
        return super().batch_infer(request, datastore)

    def info(self):
        meta = super().info()
        meta["cineprop"] = {**self.service.describe(), "version": cineprop.__version__,
                            "flag_threshold": self.settings.flag_threshold,
                            "support_tags": list(self.settings.support_tags)}
        store = self.datastore()
        if isinstance(store, CinepropDatastore):
            meta["cineprop"]["ingest"] = {"rejected": dict(store.rejected)}
        return meta

    def infer(self, request, datastore=None):
        """Answer 404 for an unknown image id (MONAI Label would fail with a bare 500), then infer.

        The task also gets the datastore id of the image (``IMAGE_ID``) to find a saved support.
        """
        request = dict(request)
        image = request.get("image")
        request[IMAGE_ID] = None
        if isinstance(image, str) and image and not os.path.exists(image):
            if not (datastore or self.datastore()).get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"unknown image id {image!r}: not in the datastore")
            request[IMAGE_ID] = image
        return super().infer(request, datastore)

    def on_init_complete(self):
        # Runs once in each server process (never in train/batch/scoring subprocesses).
        accept_signed_tokens()  # only with MONAI_LABEL_AUTH_ENABLE (lib/auth.py)
        mark_server()  # task subprocesses end with this process (lib/lifetime.py)
        from monailabel.app import app as fastapi_app

        prefix = monailabel_settings.MONAI_LABEL_API_STR
        offload_infer_route(fastapi_app, self.settings.infer_threads, prefix + "/infer/{model}")
        install_upload_routes(fastapi_app, prefix)
        blocked = block_routes(fastapi_app, prefix, local_studies=isinstance(self.datastore(), CinepropDatastore),
                               auth=monailabel_settings.MONAI_LABEL_AUTH_ENABLE)
        logger.info(f"cineprop: not served (lib/surface.py): {', '.join(blocked)}")
        restrict_origins(fastapi_app, self.security.cors_origins)
        if self.settings.preload:
            try:
                self.service.propagator()
            except Exception as exc:  # noqa: BLE001 - the first request reports it again with a 503
                logger.error(f"cineprop: preloading method {self.settings.method!r} failed: {exc}")
        super().on_init_complete()
