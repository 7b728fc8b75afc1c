"""Fine-tune the image model on cines users corrected and approved (``final`` labels).

Used by the MONAI Label train task ``cineprop_image`` and by ``cineprop finetune``. Studies are
split into training and held-back validation studies (by a stable hash of their id, at least one
of each); the fine-tuned model is published only if its validation Dice (first-frame, one-shot
propagation, as ``cineprop evaluate`` scores it) beats the starting model's. Batch-norm statistics
stay frozen: a handful of studies must not overwrite what was learned from thousands of images.
The starting checkpoint may be a ``relearn`` one: its stored image weights are fine-tuned and an
``image`` checkpoint is written (relearning has to be redone on the new image model).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import load_image_model, save_checkpoint
from cineprop.errors import CinepropError, InputError
from cineprop.io import load_labelled_cine, stem
from cineprop.training.data import CineSet
from cineprop.training.episodes import EpisodeMix, EpisodeSampler
from cineprop.training.losses import segmentation_loss
from cineprop.training.validate import validate_cines
from cineprop.transforms import normalise_intensity


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run (small on purpose: it runs on the annotation server)."""

    steps: int = 150
    batch: int = 8
    lr: float = 2e-4
    val_fraction: float = 0.25
    seed: int = 0
    threads: int | None = None


def _is_validation(study: str, fraction: float) -> bool:
    return hashlib.sha1(study.encode()).digest()[0] / 256.0 < fraction


def split_studies(ids: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """Stable train/validation split of study ids, with at least one study on each side."""
    ids = sorted(set(ids))
    if len(ids) < 2:
        raise CinepropError(f"fine-tuning needs at least 2 studies with final labels, found {len(ids)}")
    val = [i for i in ids if _is_validation(i, fraction)]
    if not val:
        val = [min(ids, key=lambda i: hashlib.sha1(i.encode()).digest())]
    if len(val) == len(ids):
        val = val[:1]
    return [i for i in ids if i not in val], val


def load_pairs(pairs: Sequence[tuple[str, str]], name: str) -> CineSet:
    """Read ``(image, final label)`` files into a :class:`CineSet` (4D: every labelled slice position).

    A cine teaches propagation only when at least two of its frames are labelled (one is the support,
    another the query); others are skipped, and if none is left that is an :class:`InputError`.
    """
    ids, frames, labels = [], [], []
    for image, label in pairs:
        _, items = load_labelled_cine(image, label)
        for cine, truth in items:
            if int(truth.reshape(-1, truth.shape[-1]).any(axis=0).sum()) >= 2:
                ids.append(cine.name)
                frames.append(normalise_intensity(cine.frames))
                labels.append(truth)
    if pairs and not ids:
        raise InputError(f"{name}: no cine has labels on at least two frames; fine-tuning needs corrected "
                         "cines (a final label with the structure on two or more frames)")
    values = tuple(sorted({int(v) for lab in labels for v in np.unique(lab) if v}))
    return CineSet(name, ids, frames, labels, values)


def _freeze_batch_norm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune_image_model(pairs: Sequence[tuple[str, str]], checkpoint: str | None, out: str | os.PathLike,
                         cfg: FinetuneConfig = FinetuneConfig(), progress: bool = True,
                         on_step: Callable[[int, int, float], None] | None = None) -> dict:
    """Fine-tune on ``(image, final label)`` file pairs; publish to ``out`` only if validation improves.

    Returns a stats dict: studies, ``val_before``/``val_after`` (mean Dice), ``published``, seconds.
    ``on_step(step, total, loss)`` is called after every step (progress logs).
    """
    start = time.time()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    by_id = {stem(image): (image, label) for image, label in pairs}
    train_ids, val_ids = split_studies(list(by_id), cfg.val_fraction)
    train = load_pairs([by_id[i] for i in train_ids], "final-train")
    val = load_pairs([by_id[i] for i in val_ids], "final-val")
    if not len(train) or not len(val):
        raise CinepropError("the final labels are empty: nothing to fine-tune on")
    model, payload = load_image_model(checkpoint)
    before = validate_cines(model, val)
    mix = EpisodeMix(cine_neighbour=0.8, cine_cross=0.2 if len(train) > 1 else 0.0, image_pair=0.0, image_cross=0.0)
    sampler = EpisodeSampler(train, [], model.config.resolution, mix, seed=cfg.seed)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    losses = []
    for step in tqdm(range(cfg.steps), desc="fine-tune", disable=not progress):
        model.train()
        _freeze_batch_norm(model)
        batch = sampler.batch(cfg.batch, 1)
        logits = model(batch["query"], batch["support"], batch["support_mask"], batch["weights"],
                       batch["memory"], batch["memory_mask"], batch["memory_weight"])
        loss = segmentation_loss(logits, batch["target"])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, cfg.steps, losses[-1])
    model.eval()
    after = validate_cines(model, val)
    published = after["mean_dice"] > before["mean_dice"]
    stats = {"train_studies": train_ids, "val_studies": val_ids, "train_cines": len(train),
             "val_before": before["mean_dice"], "val_after": after["mean_dice"], "published": published,
             "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:])),
             "seconds": round(time.time() - start, 1), "config": asdict(cfg)}
    if published:
        meta = dict(payload.get("meta", {}), finetune=stats, parent=str(checkpoint or "bundled"))
        save_checkpoint(out, model, "image", meta)
    stats["checkpoint"] = str(Path(out)) if published else None
    return stats
