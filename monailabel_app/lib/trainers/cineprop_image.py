"""Train task ``cineprop_image``: fine-tune the image model on the users' approved (``final``) labels.

``POST /train/cineprop_image`` (params optional: ``steps``, ``lr``, ``val_fraction``, ``batch``)
calls ``cineprop.training.finetune.finetune_image_model`` on the datastore's ``final`` labels.
Studies are split (stably, by id) into training and held-back validation studies; the fine-tuned
model is published as ``model/cineprop.pt`` only if its validation Dice beats the checkpoint being
served, else nothing changes. The decision and both scores are in the result and in
``model/train_stats_cineprop_image.json``. Starting from a ``relearn`` checkpoint, its image weights
are fine-tuned and an ``image`` checkpoint is published (run ``cineprop_relearn`` again after).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore

from lib.trainers.common import CinepropTrainTask, publish, read_option


class CinepropImage(CinepropTrainTask):
    name = "cineprop_image"
    #: optimisation steps; AdamW lr; share of studies held back for validation; episodes per step.
    defaults = {"steps": 150, "lr": 2e-4, "val_fraction": 0.25, "batch": 8}

    def __init__(self, service, settings, model_dir):
        super().__init__("Fine-tune the image model on the submitted final labels; published only if held-back "
                         "studies validate better", service, settings, model_dir)

    def train(self, request: dict[str, Any], datastore: Datastore, on_step: Callable) -> dict:
        steps = read_option(request, "steps", self.defaults["steps"], "int", 1)
        lr = read_option(request, "lr", self.defaults["lr"], "float", 0.0, 1.0)
        val_fraction = read_option(request, "val_fraction", self.defaults["val_fraction"], "float", 0.0, 0.9)
        batch = read_option(request, "batch", self.defaults["batch"], "int", 1)
        pairs = [(item["image"], item["label"]) for item in datastore.datalist()]
        if len(pairs) < 2:
            raise HTTPException(status_code=422, detail=(
                f"fine-tuning needs final labels of at least 2 studies (1 trains, 1 validates); the datastore "
                f"has {len(pairs)}: submit corrected labels with tag 'final' first"))
        from cineprop.training.finetune import FinetuneConfig, finetune_image_model

        start = self.start_checkpoint()
        staged = self.staged_path()
        config = FinetuneConfig(steps=steps, lr=lr, batch=batch, val_fraction=val_fraction)
        stats = finetune_image_model(pairs, start, staged, config, progress=False, on_step=on_step)
        stats.update(start_checkpoint=start or "bundled", checkpoint=None, previous=None)
        if stats["published"]:
            stats.update(publish(staged, self.model_dir))
        stats["decision"] = (f"validation Dice {stats['val_before']:.4f} -> {stats['val_after']:.4f} on "
                             f"{len(stats['val_studies'])} held-back studies: "
                             + ("published" if stats["published"] else "not better, nothing published"))
        return stats
