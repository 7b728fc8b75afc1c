"""Training of the carrier refiner (``cineprop train-refiner``).

Samples (:mod:`cineprop.training.refine_data`) are made once and kept in ``OUT/samples.npz``: ACDC
``train`` cines carried by the session's carrier, and the 2D sets' ``train`` images carried across
a random deformation; with ``synthetic`` > 0 also anatomy-free shape-change scenes
(:mod:`cineprop.training.synthetic_shapes`, cached in ``OUT/synthetic.npz``). Batches draw a share
from each source (``image_share``, ``synthetic_share``, the rest ACDC), flipped and rotated by
multiples of 90° (the three channels and the truth together), with probability ``invert`` the
frames' intensities negated. Loss: binary cross-entropy plus
soft Dice on the refined mask. Validation: ACDC ``val`` cines made the same way, scored by the mean
Dice of the refined mask and of the carried mask on the same crops (the refiner must beat the
carrier there); the best step is kept as ``best.pt``. Resumable from ``last.pt``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cineprop.model.refiner import CarrierRefiner, RefinerConfig
from cineprop.training.data import IMAGE_SETS, load_cine_set, load_image_set, read_split
from cineprop.training.crop_loop import CropTask, carried_crops, crop_dice, fit
from cineprop.training.refine_data import build_samples, stack, synthetic_samples


@dataclass
class RefinerTrainConfig:
    """Recipe of ``cineprop train-refiner`` (saved in every checkpoint's ``meta``)."""

    data: str = "../shared/data"
    out: str = "runs/refiner"
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    image_share: float = 0.3
    validate_every: int = 250
    threads: int | None = None
    resolution: int = 64
    exclude_labels: tuple[int, ...] = ()
    acdc: bool = True
    synthetic: int = 0
    synthetic_share: float = 0.0
    invert: float = 0.0
    vanish: float = 0.0


def _samples(cfg: RefinerTrainConfig, progress: bool, synthetic_dir: str | None = None) -> dict[str, np.ndarray]:
    """Train and val samples, made once and cached in ``OUT/samples.npz`` (the synthetic ones in
    ``synthetic_dir/synthetic.npz``, default ``OUT``)."""
    out = _real_samples(cfg, progress)
    cache = Path(synthetic_dir or cfg.out) / "synthetic.npz"
    if cfg.synthetic and cache.exists():
        with np.load(cache) as data:
            out.update(data)
    elif cfg.synthetic:
        rng = np.random.default_rng(cfg.seed + 1)
        synth = dict(zip(("synth_x", "synth_y"), stack(synthetic_samples(
            rng, cfg.synthetic, cfg.resolution, progress=progress, vanish=cfg.vanish))))
        np.savez(cache, **synth)
        out.update(synth)
    return out


def _real_samples(cfg: RefinerTrainConfig, progress: bool) -> dict[str, np.ndarray]:
    """ACDC and 2D-set samples (train) and ACDC ``val`` samples, cached in ``OUT/samples.npz``."""
    cache = Path(cfg.out) / "samples.npz"
    if cache.exists():
        with np.load(cache) as data:
            return dict(data)
    data = Path(cfg.data)
    split_file = data / "acdc" / "splits.csv"
    sequences = data / "acdc" / "sequences"
    train = load_cine_set(sequences, read_split(split_file, "train"), exclude_labels=cfg.exclude_labels,
                          progress=progress) if cfg.acdc else None
    val = load_cine_set(sequences, read_split(split_file, "val"), progress=progress)
    images = [load_image_set(data / name, "train") for name in IMAGE_SETS]
    out = {}
    out["cine_x"], out["cine_y"] = (build_samples(train, [], cfg.resolution, cfg.seed, progress=progress) if cfg.acdc
                                    else (np.zeros((0, 3, cfg.resolution, cfg.resolution), np.float16),
                                          np.zeros((0, cfg.resolution, cfg.resolution), bool)))
    out["image_x"], out["image_y"] = build_samples(None, images, cfg.resolution, cfg.seed, copies=3, progress=progress)
    out["val_x"], out["val_y"] = build_samples(val, [], cfg.resolution, cfg.seed, progress=progress)
    np.savez(cache, **out)
    return out


def _augment(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, invert: float = 0.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """The same flip and 90° rotation of ``x`` (``3×R×R``) and ``y`` (``R×R``); with probability
    ``invert`` both frames' intensities are negated (a cavity bright in MRI is dark in ultrasound)."""
    if invert and rng.random() < invert:
        x = np.concatenate([-x[:2], x[2:]])
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _source_counts(rng: np.random.Generator, samples: dict[str, np.ndarray], cfg: RefinerTrainConfig
                   ) -> dict[str, int]:
    """How many samples of the batch each source gives: ``image_share`` from the 2D sets,
    ``synthetic_share`` synthetic, the rest ACDC; a source without samples gives its share to the others."""
    shares = {"synth": cfg.synthetic_share, "image": cfg.image_share}
    shares["cine"] = max(0.0, 1.0 - sum(shares.values()))
    shares = {k: v for k, v in shares.items() if v > 0 and len(samples.get(f"{k}_x", ()))}
    if not shares:
        raise ValueError("train-refiner: no training samples (no ACDC, 2D or synthetic crops)")
    kinds = list(shares)
    counts = rng.multinomial(cfg.batch, np.array([shares[k] for k in kinds]) / sum(shares.values()))
    return dict(zip(kinds, (int(c) for c in counts)))


def _batch(rng: np.random.Generator, samples: dict[str, np.ndarray], cfg: RefinerTrainConfig
           ) -> tuple[torch.Tensor, torch.Tensor]:
    picks = [(kind, int(j)) for kind, n in _source_counts(rng, samples, cfg).items()
             for j in rng.integers(len(samples[f"{kind}_x"]), size=n)]
    pairs = [_augment(rng, samples[f"{kind}_x"][j].astype(np.float32), samples[f"{kind}_y"][j], cfg.invert)
             for kind, j in picks]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))[:, None]
    return x, y


def refine_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice (per sample, then mean); both ``B×1×R×R``."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    soft_dice = (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + (1 - soft_dice).mean()


@torch.no_grad()
def validate(model: CarrierRefiner, x: np.ndarray, y: np.ndarray, chunk: int = 256) -> dict[str, float]:
    """Mean Dice of the refined and of the carried mask (probability ≥ 0.5, as the carrier labels it)."""
    model.eval()
    refined = np.concatenate([(model(torch.from_numpy(x[i:i + chunk].astype(np.float32)))[:, 0] > 0).numpy()
                              for i in range(0, len(x), chunk)])
    return {"refined": float(crop_dice(refined, y).mean()), "carried": float(crop_dice(carried_crops(x), y).mean())}


def train_refiner(cfg: RefinerTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train (or resume) and return the best validation record (the loop: :func:`crop_loop.fit`)."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    samples = _samples(cfg, progress)
    model = CarrierRefiner(RefinerConfig(resolution=cfg.resolution))
    task = CropTask(
        kind="refiner", batch=lambda rng: _batch(rng, samples, cfg), loss=refine_loss,
        validate=lambda m: validate(m, samples["val_x"], samples["val_y"]),
        best=lambda val, step: {"dice": val["refined"], "carried": val["carried"], "step": step}, score="dice",
        describe=lambda val: f"val Dice refined {val['refined']:.4f} carried {val['carried']:.4f}")
    meta = {"recipe": asdict(cfg), "samples": {k: int(len(v)) for k, v in samples.items() if k.endswith("_x")}}
    return fit(model, task, cfg, meta, resume, progress)
