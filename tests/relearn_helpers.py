"""Shared by the relearning tests: a tiny image model trained in seconds on synthetic cines.

Relearning can only be tested meaningfully on a model that segments something, so the tests train
one here (episodic training exactly as ``cineprop train-image`` does, on moving-shape cines) rather
than loading weights from anywhere. The trained weights are cached for the whole test session; each
call returns a fresh copy, so no test can change what the next one gets. Training runs on one
thread whatever the caller set, so the weights do not depend on which test trained them first.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.synthetic import moving_shapes
from cineprop.training.data import CineSet
from cineprop.training.episodes import EpisodeMix, EpisodeSampler
from cineprop.training.losses import segmentation_loss
from cineprop.transforms import normalise_intensity

TINY = ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8))


def tiny_image_model(steps: int = 150, seed: int = 0) -> FewShotSegmenter:
    """A tiny few-shot segmenter trained for ``steps`` episodic steps on clean synthetic cines (a fresh copy)."""
    return copy.deepcopy(_trained_tiny_model(steps, seed))


@functools.lru_cache(maxsize=None)
def _trained_tiny_model(steps: int, seed: int) -> FewShotSegmenter:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny_model(steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_tiny_model(steps: int, seed: int) -> FewShotSegmenter:
    cines = [moving_shapes(64, 64, 12, labels=2, seed=100 + i, noise=0.08) for i in range(8)]
    data = CineSet("synthetic", [f"s{i}" for i in range(8)], [normalise_intensity(f) for f, _ in cines],
                   [lab for _, lab in cines], (1, 2))
    sampler = EpisodeSampler(data, [], TINY.resolution, EpisodeMix(cine_neighbour=0.8, cine_cross=0.2), seed=seed)
    torch.manual_seed(seed)
    model = FewShotSegmenter(TINY)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        b = sampler.batch(8, 1)
        logits = model(b["query"], b["support"], b["support_mask"], b["weights"], b["memory"], b["memory_mask"],
                       b["memory_weight"])
        loss = segmentation_loss(logits, b["target"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def shifted_cine(seed: int, frames: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic cine the tiny model never saw the like of: low contrast and strong noise."""
    image, labels = moving_shapes(64, 64, frames, labels=2, seed=seed, noise=0.08)
    rng = np.random.default_rng(seed)
    image = np.clip(image * 0.6 + 0.2 + rng.normal(0, 0.15, image.shape), 0, 1).astype(np.float32)
    return image, labels
