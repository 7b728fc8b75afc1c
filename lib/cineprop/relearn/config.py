"""Configuration of spatiotemporal consistency relearning (one frozen dataclass, saved in checkpoints).

The objective (see ``docs/method.md``)::

    L = λ_t·L_t + λ_f·L_f + λ_p·L_p + λ_s·L_s + λ_w·L_w + λ_tps·L_tps

The paper's objective is the first three terms; ``L_s`` (supervision on the painted frames),
``L_w`` (flow-warp consistency) and ``L_tps`` (temporal pseudo supervision) are our additions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from cineprop.errors import CinepropError
from cineprop.model.config import SavedConfig
from cineprop.options import replace_from_strings

#: Parameter groups of the relearned model (a frozen backbone lets its features be cached).
GROUPS = ("tau", "fusion", "head", "backbone")


@dataclass(frozen=True)
class RelearnConfig(SavedConfig):
    """Loss weights, what trains, and the optimisation schedule.

    Attributes:
        lambda_t: temporal consistency ``1 − cos`` of consecutive TAU outputs (paper's λ1).
        lambda_f: feature consistency with the frozen image model (paper's λ2).
        lambda_p: prediction consistency with the frozen image model (paper's λ3). Without it the
            paper's relearning collapses; a config with ``lambda_p = 0`` needs ``lambda_s > 0``.
        lambda_s: supervised CE + Dice on the painted frames (predicted from the other shots and
            from deformed copies of themselves).
        lambda_w: flow-warp consistency of consecutive predictions (forward-backward checked).
        lambda_tps: temporal pseudo supervision (an intensity-augmented view learns the plain
            view's confident predictions); off by default (it doubles the cost of a step).
        train: parameter groups that train (subset of ``GROUPS``); the rest stay frozen.
        steps: optimisation steps (per cine at test time; in total for a collection).
        lr, weight_decay: AdamW settings.
        window_frames: consecutive frames whose predictions one step computes.
        copies: deformed copies made of each painted frame (for ``L_s``).
        copies_per_step: of those, used per step.
        copy_strength: largest deformation of a copy (1 ≈ rotation ±8°, scale ±8 %, elastic ±2 %).
        cycle_distance: the painted frames are also predicted from the stage-1 prediction of the
            frames up to this far away as memory (1: the neighbours only).
        patience, tolerance: stop when the smoothed loss has not fallen by ``tolerance`` (relative)
            for ``patience`` steps (0 disables early stopping).
        seed: seeds every random choice (windows, copies, initialisation of the TAU).
        guard_area_ratio: after relearning, a label whose predicted area over the query frames
            changes by more than this factor (either way) against the image model is reverted
            (vanished or exploded; a genuine correction of a gross over-segmentation can shrink
            the area ×4, so the factor is large).
        guard_dice: a label whose Dice against the image model's prediction falls below this is
            reverted (an unrelated region).
        guard_support_drop: a label whose painted frames, predicted without themselves, lose more
            Dice than this against the image model is reverted (the only labels we have).
        tps_confidence: pixels the plain view predicts with probability above this (or below
            ``1 − this``) supervise the augmented view.
    """

    lambda_t: float = 0.1
    lambda_f: float = 0.5
    lambda_p: float = 1.0
    lambda_s: float = 1.0
    lambda_w: float = 1.0
    lambda_tps: float = 0.0
    train: tuple[str, ...] = ("tau", "head")
    steps: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    window_frames: int = 6
    copies: int = 6
    copies_per_step: int = 3
    copy_strength: float = 1.4
    cycle_distance: int = 1
    patience: int = 12
    tolerance: float = 0.01
    seed: int = 0
    guard_area_ratio: float = 10.0
    guard_dice: float = 0.2
    guard_support_drop: float = 0.2
    tps_confidence: float = 0.9

    def __post_init__(self) -> None:
        weights = {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("lambda_")}
        bad = [k for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
        if bad:
            raise CinepropError(f"relearn config: loss weights must be finite and ≥ 0: {', '.join(bad)}")
        if self.lambda_p == 0 and self.lambda_s == 0:
            raise CinepropError("relearn config: lambda_p = 0 needs lambda_s > 0 (without an anchor to the image "
                                "model or to the painted frames relearning collapses)")
        unknown = [g for g in self.train if g not in GROUPS]
        if unknown or not self.train:
            raise CinepropError(f"relearn config: train must be a non-empty subset of {', '.join(GROUPS)}; "
                                f"got {', '.join(self.train) or 'nothing'}")
        for name in ("steps", "window_frames", "copies", "copies_per_step", "patience", "cycle_distance"):
            if int(getattr(self, name)) < (0 if name in ("steps", "copies", "copies_per_step", "patience") else 1):
                raise CinepropError(f"relearn config: {name} = {getattr(self, name)} is out of range")
        if not (self.lr > 0 and self.copy_strength > 0 and self.guard_area_ratio >= 1 and 0 <= self.guard_dice <= 1
                and 0.5 < self.tps_confidence < 1):
            raise CinepropError("relearn config: lr, copy_strength > 0; guard_area_ratio ≥ 1; guard_dice in [0, 1]; "
                                "tps_confidence in (0.5, 1)")

    @property
    def backbone_frozen(self) -> bool:
        return "backbone" not in self.train

    @property
    def fused_frozen(self) -> bool:
        """Whether everything below the TAU is frozen (fused features can then be cached)."""
        return self.backbone_frozen and "fusion" not in self.train

    def with_options(self, options: Mapping[str, Any]) -> "RelearnConfig":
        """A copy with ``options`` applied; string values (from a command line) are converted
        (:mod:`cineprop.options`: ``train`` accepts ``"tau,head"``). Unknown names raise
        :class:`~cineprop.errors.CinepropError`."""
        return replace_from_strings(self, options, "relearn")
