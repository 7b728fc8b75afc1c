"""The one parameter update of image training, per-cine relearning and collection relearning."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

#: gradient-norm clip shared by every trainer (episodic training's spikes on rare tiny objects motivated it)
GRAD_CLIP = 5.0


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[torch.nn.Parameter],
                   reduce_gradients: Callable[[list], None] | None = None) -> None:
    """zero → backward → optional cross-worker reduction → clip to :data:`GRAD_CLIP` → step.

    Args:
        params: the parameters being trained (what is clipped and, with ``reduce_gradients``, averaged).
        reduce_gradients: called with the parameter list after ``backward`` (Ray Train's gradient average).
    """
    params = list(params)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if reduce_gradients is not None:
        reduce_gradients(params)
    torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimiser.step()


def warmup_cosine(step: int, lr: float, steps: int, warmup: int) -> float:
    """Learning rate at ``step``: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
