"""Task config ``cineprop`` (MONAI Label's ``TaskConfig`` convention): which tasks the app registers.

``init(name, model_dir, conf, planner, settings=, service=, datastore=, lock_dir=)`` takes the app's
parsed settings, its shared :class:`lib.service.PropagationService` and its datastore.
The train tasks (``lib/trainers``) are registered only for methods that load a checkpoint
(``model``, ``relearn``): a baseline such as ``flow`` has nothing to train.
"""

from __future__ import annotations

from typing import Any, Dict

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from lib.activelearning.cineprop_uncertain import CinepropUncertain
from lib.infers.cineprop import CinepropInfer
from lib.scoring.cineprop_confidence import CinepropConfidence
from lib.trainers.cineprop_image import CinepropImage
from lib.trainers.cineprop_relearn import CinepropRelearn


class CinepropConfig(TaskConfig):
    def init(self, name: str, model_dir: str, conf: Dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.settings = kwargs["settings"]
        self.service = kwargs["service"]
        self.datastore = kwargs["datastore"]
        self.lock_dir = kwargs.get("lock_dir")

    def infer(self) -> Dict[str, InferTask]:
        return {self.name: CinepropInfer(self.service, self.settings, self.datastore)}

    def trainer(self) -> Dict[str, TrainTask]:
        if not self.service.trains():
            return {}
        tasks = (CinepropRelearn(self.service, self.settings, self.model_dir),
                 CinepropImage(self.service, self.settings, self.model_dir))
        return {task.name: task for task in tasks}

    def strategy(self) -> Dict[str, Strategy]:
        return {"cineprop_uncertain": CinepropUncertain()}

    def scoring_method(self) -> Dict[str, ScoringMethod]:
        return {"cineprop_confidence": CinepropConfidence(self.service, self.settings, self.lock_dir)}
