"""Train task ``cineprop_relearn``: label-free relearning over the datastore's painted studies.

``POST /train/cineprop_relearn`` (params optional: ``steps``, ``lr``, ``steps_per_cine``) runs
``cineprop.relearn.collection.relearn_pairs`` on every study that has a saved support or final
label (the first of ``--conf support_tags`` it has, as the infer task looks them up; only its
painted frames are used as labels, every other frame is learned from without labels). It starts
from the image weights of the checkpoint being served and publishes a checkpoint of kind
``relearn`` (image model + Temporal Attention Unit, two-stage inference with ``--method model``)
as ``model/cineprop.pt``; stats go to ``model/train_stats_cineprop_relearn.json``.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore

from lib.study_records import saved_support
from lib.trainers.common import CinepropTrainTask, publish, read_option


class CinepropRelearn(CinepropTrainTask):
    name = "cineprop_relearn"
    #: steps in total over all studies; lr of AdamW; consecutive steps on one cine.
    defaults = {"steps": 100, "lr": 1e-3, "steps_per_cine": 4}

    def __init__(self, service, settings, model_dir):
        super().__init__("Relearn the model on the studies' unlabelled frames (label-free; uses each study's "
                         "painted support or final label)", service, settings, model_dir)

    def pairs(self, datastore: Datastore) -> list[tuple[str, str, str, str]]:
        """``(image id, image file, label file, tag)`` of every study with a saved support or final label."""
        out = []
        for image_id in sorted(datastore.list_images()):
            found = saved_support(datastore, image_id, self.settings.support_tags)
            image = datastore.get_image_uri(image_id)
            if found and image:
                out.append((image_id, image, found[0], found[1]))
        return out

    def train(self, request: dict[str, Any], datastore: Datastore, on_step: Callable) -> dict:
        steps = read_option(request, "steps", self.defaults["steps"], "int", 1)
        lr = read_option(request, "lr", self.defaults["lr"], "float", 0.0, 1.0)
        per_cine = read_option(request, "steps_per_cine", self.defaults["steps_per_cine"], "int", 1)
        pairs = self.pairs(datastore)
        if not pairs:
            raise HTTPException(status_code=422, detail=(
                "no study to relearn on: none has a saved support or final label (tags: "
                f"{', '.join(self.settings.support_tags)}); propagate with save_support or submit a label first"))
        from cineprop.relearn.collection import relearn_pairs
        from cineprop.relearn.config import RelearnConfig

        start = self.start_checkpoint()
        staged = self.staged_path()
        summary = relearn_pairs([(image, label) for _, image, label, _ in pairs], staged, start,
                                RelearnConfig(steps=steps, lr=lr), steps_per_cine=per_cine, resume=False,
                                device=self.settings.device or "cpu", progress=False, on_step=on_step)
        staged.with_name(staged.name.removesuffix(".pt") + ".last.pt").unlink(missing_ok=True)
        published = publish(staged, self.model_dir)
        return {"published": True, **published, "start_checkpoint": start or "bundled",
                "studies": {image_id: tag for image_id, _, _, tag in pairs}, "steps": summary["steps"],
                "lr": lr, "steps_per_cine": per_cine, "cines_visited": summary["cines_visited"],
                "final_loss": summary["final_loss"]}
