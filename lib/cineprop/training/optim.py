"""The one parameter update of image training, per-cine relearning and collection relearning."""

from __future__ import annotations

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
