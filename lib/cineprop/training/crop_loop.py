"""The training loop of the small crop models (the carrier refiner, the presence check).

Both learn from the same cached samples (:mod:`cineprop.training.refine_data`) and share the loop:
AdamW with a warm-up + cosine schedule, resumable from ``OUT/last.pt`` (weights, optimiser, step,
history, best record, random state), validated every ``validate_every`` steps and at the end, the
best step kept as ``OUT/best.pt`` and the history in ``OUT/history.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import read_checkpoint, save_checkpoint
from cineprop.io.atomic import atomic_write_text
from cineprop.training.optim import optimiser_step, warmup_cosine


def carried_crops(x: np.ndarray) -> np.ndarray:
    """``N×R×R`` bool: the carried mask of each input (``N×3×R×R``, channel 2: the carried probability) as
    the carrier's labels take it (probability ≥ 0.5, :func:`cineprop.support.labels_from_probabilities`;
    where the anchored carry's two warps disagree it is exactly 0.5)."""
    return x[:, 2].astype(np.float32) >= 0.5


def crop_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``N`` Dice of two ``N×R×R`` bool crop stacks, 1 where both crops are empty (:func:`cineprop.metrics.dice`
    per crop): how both crop models score their validation crops."""
    pred, truth = pred.reshape(len(pred), -1), truth.reshape(len(truth), -1)
    total = pred.sum(axis=1) + truth.sum(axis=1)
    return np.where(total > 0, 2 * (pred & truth).sum(axis=1) / np.maximum(total, 1), 1.0)


@dataclass
class CropTask:
    """What differs between the crop models.

    Attributes:
        kind: checkpoint kind (``refiner``, ``presence``).
        batch: ``rng → (inputs, targets)`` of one training batch.
        loss: ``(model output, targets) → loss``.
        validate: ``model → {name: value}`` on the validation samples.
        best: ``(validation, step) → best record``; its ``score`` entry is compared.
        score: the key of the best record to maximise.
        describe: ``validation → text`` for the progress log.
    """

    kind: str
    batch: Callable[[np.random.Generator], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    validate: Callable[[torch.nn.Module], dict]
    best: Callable[[dict, int], dict]
    score: str
    describe: Callable[[dict], str]


def fit(model: torch.nn.Module, task: CropTask, cfg, meta: dict, resume: bool = True, progress: bool = True) -> dict:
    """Train ``model`` on ``task`` with ``cfg`` (``out``, ``steps``, ``lr``, ``warmup``, ``seed``,
    ``validate_every``); return ``{"best", "out", "steps"}``."""
    out = Path(cfg.out)
    rng = np.random.default_rng(cfg.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, history, best = 0, [], {task.score: -np.inf, "step": -1}
    if resume and (out / "last.pt").exists():
        payload = read_checkpoint(out / "last.pt")
        model.load_state_dict(payload["state_dict"])
        extra = payload["extra_state"]
        optimiser.load_state_dict(extra["optimiser"])
        step, history, best = extra["step"], extra["history"], extra["best"]
        rng.bit_generator.state = extra["rng"]
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train-{task.kind}", disable=not progress, dynamic_ncols=True)
    start, running = time.time(), None
    while step < cfg.steps:
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = warmup_cosine(step, cfg.lr, cfg.steps, cfg.warmup)
        x, y = task.batch(rng)
        loss = task.loss(model(x), y)
        optimiser_step(optimiser, loss, model.parameters())
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", best=f"{best[task.score]:.4f}")
        if step % cfg.validate_every == 0 or step == cfg.steps:
            val = task.validate(model)
            history.append({"step": step, "loss": running, "val": val, "minutes": (time.time() - start) / 60})
            meta_now = dict(meta, step=step, val=val)
            record = task.best(val, step)
            if record[task.score] > best[task.score]:
                best = record
                save_checkpoint(out / "best.pt", model, task.kind, dict(meta_now, best=best))
            save_checkpoint(out / "last.pt", model, task.kind, meta_now, extra_state={
                "optimiser": optimiser.state_dict(), "step": step, "history": history, "best": best,
                "rng": rng.bit_generator.state})
            atomic_write_text(out / "history.json", json.dumps(history, indent=1))
            bar.write(f"step {step}: loss {running:.4f}  {task.describe(val)}")
    bar.close()
    return {"best": best, "out": str(out), "steps": step}
