"""Episodic training of the image-phase model (``cineprop train-image``).

Resumable (``last.pt`` holds the model, optimiser, step and random states), seeded, validated on
the ACDC ``val`` split by propagating real cines with :class:`~cineprop.session.PropagationSession`
(the number that matters), with the best checkpoint kept as ``best.pt`` and the curve saved as
``curve.png``.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import read_checkpoint, save_checkpoint
from cineprop.io.atomic import atomic_write_text
from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.training.data import IMAGE_SETS, load_cine_set, load_image_set, read_split
from cineprop.training.episodes import EpisodeMix, EpisodeSampler
from cineprop.training.losses import segmentation_loss
from cineprop.training.optim import optimiser_step, warmup_cosine
from cineprop.training.validate import validate_cines


@dataclass
class TrainConfig:
    """Recipe of ``cineprop train-image`` (saved in every checkpoint's ``meta``)."""

    data: str = "../shared/data"
    out: str = "runs/image"
    steps: int = 6000
    batch: int = 12
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    seed: int = 0
    validate_every: int = 250
    exclude_labels: tuple[int, ...] = ()
    acdc: bool = True                # False: no ACDC training episode (the 2D sets only); ACDC val still validates
    image_sets: tuple[str, ...] = IMAGE_SETS
    shots_p: tuple[float, float, float] = (0.6, 0.25, 0.15)
    val_limit: int | None = None
    backbone_weights: str | None = None
    init: str | None = None          # checkpoint whose weights start the run (warm restart), "bundled" allowed
    threads: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    mix: EpisodeMix = field(default_factory=EpisodeMix)


def _lr(step: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, cfg.lr, cfg.steps, cfg.warmup)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_image(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train (or resume) and return the final summary (best validation Dice and where it is)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    _seed_all(cfg.seed)
    sampler, val_cines, meta = _load_data(cfg, progress)
    model = FewShotSegmenter(cfg.model)
    if cfg.backbone_weights:
        _load_backbone_weights(model, cfg.backbone_weights)
    if cfg.init:
        _load_initial_weights(model, cfg.init)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"step": 0, "history": [], "best": {"dice": -1.0, "step": -1}, "running": None}
    if resume and (out / "last.pt").exists():
        _resume(out / "last.pt", model, optimiser, sampler, state)
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train-image", disable=not progress, dynamic_ncols=True)
    start = time.time() - 60 * (state["history"][-1]["minutes"] if state["history"] else 0.0)  # minutes of every run
    while state["step"] < cfg.steps:
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = _lr(state["step"], cfg)
        shots = 1 + int(sampler.rng.choice(3, p=cfg.shots_p))
        batch = sampler.batch(cfg.batch, shots)
        logits = model(batch["query"], batch["support"], batch["support_mask"], batch["weights"],
                       batch["memory"], batch["memory_mask"], batch["memory_weight"])
        loss = segmentation_loss(logits, batch["target"])
        optimiser_step(optimiser, loss, model.parameters())
        state["step"] += 1
        running = state["running"]
        state["running"] = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{state['running']:.3f}", best=f"{state['best']['dice']:.3f}")
        if state["step"] % cfg.validate_every == 0 or state["step"] == cfg.steps:
            _validate_and_save(cfg, out, model, optimiser, sampler, val_cines, meta, state,
                               (time.time() - start) / 60, bar.write)
    bar.close()
    return {"best": state["best"], "out": str(out), "steps": state["step"]}


def _load_data(cfg: TrainConfig, progress: bool) -> tuple[EpisodeSampler, object, dict]:
    """The episode sampler over the training data, the validation cines and the run's ``meta``."""
    data = Path(cfg.data)
    split_file = data / "acdc" / "splits.csv"
    train_ids = read_split(split_file, "train")
    val_ids = read_split(split_file, "val")[: cfg.val_limit]
    cines = load_cine_set(data / "acdc" / "sequences", train_ids, exclude_labels=cfg.exclude_labels,
                          progress=progress) if cfg.acdc else None
    images = [load_image_set(data / name, "train") for name in cfg.image_sets]
    val_cines = load_cine_set(data / "acdc" / "sequences", val_ids, progress=progress)
    sampler = EpisodeSampler(cines, images, cfg.model.resolution, cfg.mix, seed=cfg.seed)
    meta = {"recipe": _jsonable(asdict(cfg)), "train_sequences": len(train_ids) if cfg.acdc else 0,
            "image_sets": {s.name: len(s) for s in images}, "val_sequences": len(val_ids)}
    return sampler, val_cines, meta


def _resume(last: Path, model: FewShotSegmenter, optimiser, sampler: EpisodeSampler, state: dict) -> None:
    """Restore weights, optimiser, step, history, best, the loss average and random states from ``last.pt``
    (checkpoints written before the average was stored restart it)."""
    payload = read_checkpoint(last)
    model.load_state_dict(payload["state_dict"])
    extra = payload["extra_state"]
    optimiser.load_state_dict(extra["optimiser"])
    state.update(step=extra["step"], history=extra["history"], best=extra["best"], running=extra.get("running"))
    sampler.rng.bit_generator.state = extra["sampler_rng"]
    torch.set_rng_state(extra["torch_rng"])


def _validate_and_save(cfg: TrainConfig, out: Path, model: FewShotSegmenter, optimiser, sampler: EpisodeSampler,
                       val_cines, meta: dict, state: dict, minutes: float, write) -> None:
    """Validate on the ACDC val cines; write ``best.pt`` when better, always ``last.pt``, the history
    and the curve."""
    model.eval()
    step, history = state["step"], state["history"]
    val = validate_cines(model, val_cines)
    history.append({"step": step, "loss": state["running"], "lr": _lr(step, cfg), "val_dice": val["mean_dice"],
                    "val_per_label": val["per_label"], "minutes": minutes})
    meta_now = dict(meta, step=step, val=val, history_tail=history[-3:])
    if val["mean_dice"] > state["best"]["dice"]:
        state["best"] = {"dice": val["mean_dice"], "step": step, "per_label": val["per_label"]}
        save_checkpoint(out / "best.pt", model, "image", dict(meta_now, best=state["best"]))
    save_checkpoint(out / "last.pt", model, "image", meta_now, extra_state={
        "optimiser": optimiser.state_dict(), "step": step, "history": history, "best": state["best"],
        "running": state["running"], "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state()})
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    plot_curve(history, out / "curve.png")
    write(f"step {step}: loss {state['running']:.4f}  val Dice {val['mean_dice']:.4f} {val['per_label']}")


def _load_backbone_weights(model: FewShotSegmenter, path: str) -> None:
    from cineprop.errors import CheckpointError

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not hasattr(model.backbone, "load_imagenet"):
        raise CheckpointError(f"{path}: backbone weights need --backbone resnet18")
    model.backbone.load_imagenet(state)


def _load_initial_weights(model: FewShotSegmenter, path: str) -> None:
    """Copy an image checkpoint's weights into ``model`` (same architecture, strict)."""
    from cineprop.errors import CheckpointError

    payload = read_checkpoint(None if path == "bundled" else path)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: --init needs a checkpoint of the same architecture ({exc})") from exc


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def plot_curve(history: list[dict], path: Path) -> None:
    """Training loss and validation Dice against steps (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, [h["loss"] for h in history], color="tab:red", label="train loss (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["val_dice"] for h in history], color="tab:blue", marker="o", label="val Dice")
    ax2.set_ylabel("ACDC val mean Dice (first-frame, 1 shot)", color="tab:blue")
    ax2.set_ylim(0, 1)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
