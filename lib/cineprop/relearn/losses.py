"""The relearning loss terms (formulas in ``docs/method.md``).

Shapes: ``L`` labels, ``n`` consecutive frames of a window, ``C×h×w`` features entering the head,
``R×R`` foreground probabilities. ``L_s`` (cross-entropy + Dice on the painted frames) is the
training loss, :func:`cineprop.training.losses.segmentation_loss` with ``per_image=True``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from cineprop.relearn.two_stage import warp

_EPS = 1e-6


def pairwise_cosine(features: torch.Tensor) -> torch.Tensor:
    """Per-pixel cosine similarity of consecutive frames: ``B×T×C×h×w`` → ``B×(T−1)×h×w``."""
    return F.cosine_similarity(features[:, 1:], features[:, :-1], dim=2, eps=1e-6)


def temporal_loss(features: torch.Tensor) -> torch.Tensor:
    """``L_t = 1 − mean cos(f_t, f_{t+1})`` over pixels and consecutive frames (``L×n×C×h×w``)."""
    if features.shape[1] < 2:
        return features.sum() * 0.0
    return 1.0 - pairwise_cosine(features).mean()


def feature_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_f = ‖F − F*‖² / ‖F*‖²``: squared difference to the image model's features, relative."""
    return (features - target).pow(2).mean() / target.pow(2).mean().clamp_min(_EPS)


def prediction_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_p = mean (P − P*)²`` of the foreground probabilities."""
    return (probs - target).pow(2).mean()


def warp_loss(probs: torch.Tensor, pairs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
              ) -> torch.Tensor:
    """``L_w``: predictions of consecutive frames agree after warping by optical flow.

    Args:
        probs: ``L×n×R×R`` foreground probabilities of ``n`` consecutive frames.
        pairs: for each ``i < n − 1``: ``(grid i→i+1, valid on i+1, grid i+1→i, valid on i)``, the
            grids warping frame ``i`` onto ``i + 1`` and back (``1×R×R×2``), the validity masks
            (``R×R`` float) where the forward-backward check passed.

    Returns:
        ``Σ valid · (P_{i+1} − warp(P_i))² / Σ valid`` over both directions, pairs and labels.
    """
    total, weight = probs.sum() * 0.0, probs.new_tensor(0.0)
    for i, (grid_f, valid_f, grid_b, valid_b) in enumerate(pairs):
        a, b = probs[:, i], probs[:, i + 1]
        total = total + ((b - warp(a, grid_f)).pow(2) * valid_f).sum() + ((a - warp(b, grid_b)).pow(2) * valid_b).sum()
        weight = weight + probs.shape[0] * (valid_f.sum() + valid_b.sum())
    return total / weight.clamp_min(1.0)


def pseudo_supervision_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, confidence: float) -> torch.Tensor:
    """``L_tps``: confident plain-view predictions supervise the augmented view.

    Args:
        logits: ``B×2×R×R`` of the augmented view.
        teacher_probs: ``B×R×R`` plain-view probabilities (no gradient flows into them).
        confidence: pixels with ``p > confidence`` or ``p < 1 − confidence`` are used.
    """
    p = teacher_probs.detach()
    keep = ((p > confidence) | (p < 1 - confidence)).float()
    ce = F.cross_entropy(logits, (p > 0.5).long(), reduction="none")
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)
