"""Training of the presence check (``cineprop train-presence``).

Samples are the carrier refiner's (:mod:`cineprop.training.refine_data`, made as
``cineprop train-refiner`` makes them and cached in ``SAMPLES/samples.npz``, so one set serves
both): a painted mask carried onto a query frame, and the truth there. The target is whether the
truth crop is empty (the structure left the frame: 8 % of the ACDC ``train`` pairs; the 2D sets'
deformed copies almost never). With ``synthetic`` > 0, also anatomy-free scenes whose object left
the query with probability ``vanish`` (:func:`cineprop.training.synthetic_shapes.shape_change_pair`;
cached in ``OUT/synthetic.npz``, not in the samples folder). Batches draw ``image_share`` from the
2D sets, ``synthetic_share`` from the scenes and the rest from ACDC, flipped and rotated by
multiples of 90°. Loss: binary cross-entropy. Validation: ACDC ``val`` pairs;
emptying the carried mask where the absent probability exceeds ``threshold`` changes the mean
crop Dice by ``gain`` (+1 for each absent structure caught, minus the carried Dice of each present
one emptied); the best step is kept as ``best.pt``. Resumable from ``last.pt``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cineprop.model.presence import PresenceConfig, PresenceNet
from cineprop.training.crop_loop import CropTask, carried_crops, crop_dice, fit
from cineprop.training.train_refiner import RefinerTrainConfig, _samples
from cineprop.training.train_refiner import _batch as refiner_batch


@dataclass
class PresenceTrainConfig:
    """Recipe of ``cineprop train-presence`` (saved in every checkpoint's ``meta``)."""

    data: str = "../shared/data"
    out: str = "runs/presence"
    samples: str | None = None          # folder of the samples.npz to use or make (None: OUT)
    steps: int = 4000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 0
    image_share: float = 0.15
    threshold: float = 0.5
    validate_every: int = 500
    threads: int | None = None
    resolution: int = 64
    exclude_labels: tuple[int, ...] = ()
    acdc: bool = True
    synthetic: int = 0                  # anatomy-free scenes (cached in OUT/synthetic.npz, made once)
    synthetic_share: float = 0.0
    vanish: float = 0.5                 # share of those scenes whose object left the query


def absent_targets(y: np.ndarray) -> np.ndarray:
    """``N`` float32: 1 where the truth crop (``N×R×R`` bool) is empty."""
    return (~y.reshape(len(y), -1).any(axis=1)).astype(np.float32)


def _batch(rng: np.random.Generator, samples: dict[str, np.ndarray], cfg: RefinerTrainConfig
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The refiner's batch (:func:`train_refiner._batch`), its truth crops turned into absent targets."""
    x, y = refiner_batch(rng, samples, cfg)
    return x, torch.from_numpy(absent_targets(y.numpy() > 0.5))


@torch.no_grad()
def validate(model: PresenceNet, x: np.ndarray, y: np.ndarray, threshold: float, chunk: int = 256) -> dict:
    """At ``threshold``: the share of crops called absent, the precision of that call, and the change of the
    mean crop Dice if those carried masks were emptied (``gain``)."""
    model.eval()
    p = torch.cat([torch.sigmoid(model(torch.from_numpy(x[i:i + chunk].astype(np.float32))))
                   for i in range(0, len(x), chunk)]).numpy()
    absent = absent_targets(y) > 0.5
    dice = crop_dice(carried_crops(x), y)
    called = p > threshold
    gain = (np.sum(1 - dice[called & absent]) - np.sum(dice[called & ~absent])) / len(y)
    return {"called": float(called.mean()), "precision": float((called & absent).sum() / max(called.sum(), 1)),
            "recall": float((called & absent).sum() / max(absent.sum(), 1)), "gain": float(gain)}


def _sample_config(cfg: PresenceTrainConfig) -> RefinerTrainConfig:
    """The refiner recipe whose samples this run uses (made in ``cfg.samples`` or ``cfg.out``)."""
    return RefinerTrainConfig(data=cfg.data, out=cfg.samples or cfg.out, seed=cfg.seed, batch=cfg.batch,
                              image_share=cfg.image_share, resolution=cfg.resolution,
                              exclude_labels=cfg.exclude_labels, acdc=cfg.acdc, synthetic=cfg.synthetic,
                              synthetic_share=cfg.synthetic_share, vanish=cfg.vanish)


def train_presence(cfg: PresenceTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train (or resume) and return the best validation record (the loop: :func:`crop_loop.fit`)."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    sample_cfg = _sample_config(cfg)
    Path(sample_cfg.out).mkdir(parents=True, exist_ok=True)
    samples = _samples(sample_cfg, progress, synthetic_dir=cfg.out)
    model = PresenceNet(PresenceConfig(resolution=cfg.resolution))
    task = CropTask(
        kind="presence", batch=lambda rng: _batch(rng, samples, sample_cfg), loss=F.binary_cross_entropy_with_logits,
        validate=lambda m: validate(m, samples["val_x"], samples["val_y"], cfg.threshold),
        best=lambda val, step: {"gain": val["gain"], "step": step, "val": val}, score="gain",
        describe=lambda val: (f"val at {cfg.threshold}: called {val['called']:.3f} precision {val['precision']:.3f} "
                              f"recall {val['recall']:.3f} gain {val['gain']:+.4f}"))
    meta = {"recipe": asdict(cfg), "samples": {k: int(len(v)) for k, v in samples.items() if k.endswith("_x")}}
    return fit(model, task, cfg, meta, resume, progress)
