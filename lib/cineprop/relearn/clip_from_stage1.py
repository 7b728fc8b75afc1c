"""Building a :class:`~cineprop.relearn.two_stage.VideoClip` from a finished stage-1 session (stage 1 → clip).

Stage 1 runs the image model's session; the clip then holds the ROI crops, painted masks and
stage-1 predictions at the working resolution, the stage-2 plan of every (label, frame), the
painted frames' exclusive items and deformed copies (for ``L_s``), and optionally an
intensity-augmented view of every frame (for ``L_tps``).
"""

from __future__ import annotations

import numpy as np
import torch

from cineprop.io.cine import Cine
from cineprop.propagation import Propagation
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.two_stage import Item, VideoClip, plan_item
from cineprop.session import PropagationSession, SessionConfig
from cineprop.shots import shot_weight
from cineprop.support import SupportSet


def run_stage1(model: torch.nn.Module, cine: Cine, support: SupportSet, config: SessionConfig = SessionConfig(),
               device: str | torch.device = "cpu") -> tuple[PropagationSession, Propagation]:
    """Stage 1: the image model's propagation session on ``cine`` from ``support``."""
    session = PropagationSession(model, cine, config, device)
    session.set_supports(support)
    return session, session.propagate()


def build_clip(session: PropagationSession, stage1: Propagation, config: RelearnConfig = RelearnConfig(),
               training: bool = True) -> VideoClip:
    """The stage-2 clip of a propagated session.

    Args:
        training: also make the exclusive items, deformed copies (``config.copies`` per painted
            frame) and, when ``config.lambda_tps > 0``, the augmented view.
    """
    rng = np.random.default_rng(config.seed)
    r, roi, device = session.resolution, session.roi, session.device
    h, w, t = session.cine.shape
    labels = sorted(session.supports)
    crops = [roi.crop(session.frames[:, :, i], r) for i in range(t)]
    bank = [np.asarray(c, np.float32) for c in crops]
    painted_np = {slot: {f: roi.crop(m, r, nearest=True) for f, m in sorted(session.supports[label].items())}
                  for slot, label in enumerate(labels)}
    stage1_probs = np.stack([session.roi_probabilities[label] for label in labels])       # L×T×R×R
    memory_np = {(slot, i): (stage1_probs[slot, i] > 0.5).astype(np.float32)
                 for slot in range(len(labels)) for i in range(t)}
    shots, scale = session.config.max_shots, session.config.temporal_scale   # stage 2 weighs shots as stage 1
    floor, cutoff = session.config.support_weight_floor, session.config.shot_cutoff
    grid = [[plan_item(slot, list(painted_np[slot]), i, t, shots, scale, floor=floor, cutoff=cutoff)
             for i in range(t)] for slot in range(len(labels))]
    exclusive, copies, targets = [], [], []
    augmented = None
    if training:
        for slot in range(len(labels)):
            for f, mask in painted_np[slot].items():
                item = plan_item(slot, list(painted_np[slot]), f, t, shots, scale, exclude_self=True, floor=floor,
                                 cutoff=cutoff)
                exclusive.append((item, mask))
                for d in range(2, config.cycle_distance + 1):       # memory from farther frames
                    for m in (f - d, f + d):
                        if 0 <= m < t and m not in painted_np[slot]:
                            exclusive.append((Item(slot, f, item.supports, (m, shot_weight(d, scale))), mask))
                for _ in range(config.copies):
                    copies.append(_deformed_copy(rng, slot, f, crops[f], mask, bank, memory_np, scale,
                                                 config.copy_strength))
        if config.lambda_tps > 0:
            augmented = len(bank)
            bank.extend(_augment_intensity(rng, c) for c in crops)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)  # noqa: E731
    return VideoClip(
        name=session.cine.name, shape=(h, w, t), roi=roi, labels=labels,
        bank=as_tensor(np.stack(bank))[:, None],
        painted={s: {f: as_tensor(m) for f, m in frames.items()} for s, frames in painted_np.items()},
        stage1=as_tensor(stage1_probs),
        memory_masks={k: as_tensor(v) for k, v in memory_np.items()},
        grid=grid,
        exclusive=[(it, as_tensor(m)) for it, m in exclusive],
        copies=[(it, as_tensor(m)) for it, m in copies],
        augmented=augmented, stage1_result=stage1)


def _deformed_copy(rng: np.random.Generator, slot: int, frame: int, image: np.ndarray, mask: np.ndarray,
                   bank: list[np.ndarray], memory: dict, temporal_scale: float, strength: float = 1.4
                   ) -> tuple[Item, np.ndarray]:
    """A painted frame deformed as if it were a neighbouring frame (``image_pair`` episodes of training).

    The copy is the query; the painted frame is its support shot; a lightly deformed copy of the
    query with a possibly corrupted mask is its memory shot, as stage 2 gives every query frame.
    """
    from cineprop.training.augment import corrupt_mask, deform

    query, target = deform(rng, image, mask > 0.5, float(rng.uniform(min(0.4, strength), strength)))
    near, near_mask = deform(rng, query, target, 0.4)
    if rng.random() < 0.5:
        near_mask = corrupt_mask(rng, near_mask)
    noise = float(rng.uniform(0.0, 0.03))
    q_index = len(bank)
    bank.append(np.clip(query + rng.normal(0, noise, query.shape), 0, 1).astype(np.float32))
    m_index = len(bank)
    bank.append(np.clip(near + rng.normal(0, noise, near.shape), 0, 1).astype(np.float32))
    memory[(slot, m_index)] = near_mask.astype(np.float32)
    weight = shot_weight(1, temporal_scale)
    return Item(slot, q_index, ((frame, weight),), (m_index, weight)), target.astype(np.float32)


def _augment_intensity(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A photometric view of a frame (gamma, contrast, noise) for temporal pseudo supervision.

    Training's intensity change with milder ranges, no brightness shift and no blur or speckle.
    """
    from cineprop.training.augment import Intensity

    gamma = float(np.exp(rng.uniform(-0.35, 0.35)))
    contrast = float(rng.uniform(0.8, 1.2))
    return Intensity(gamma=gamma, contrast=contrast, gauss=float(rng.uniform(0.0, 0.04))).apply(rng, image)
