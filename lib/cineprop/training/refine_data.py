"""Training samples for the carrier refiner: what the carrier really carries, and the truth.

A sample is the refiner's input (:func:`cineprop.refine.refiner_input`, ``3×R×R``) and the true
mask on the same crop (``R×R`` bool):

* :func:`cine_samples`: a labelled cine (ACDC ``train``): every labelled frame is painted in turn,
  each label's mask is carried to every other frame by the session's carrier (DIS with anchored
  carrying, :func:`cineprop.flow.anchored_carry`), and the query frame's label is the truth.
* :func:`image_samples`: a labelled 2D image (HC18, BUSI, CHASE_DB1 ``train``): a deformed,
  re-contrasted copy is the painted frame, the image itself the query; the carrier registers them
  as it would two frames of a cine. Smooth motion where the carrier is nearly right: the refiner
  must learn to leave a good carried mask alone.
* :func:`synthetic_samples`: anatomy-free random scenes whose object changes size and outline
  between the painted frame and the query (:mod:`cineprop.training.synthetic_shapes`), carried the
  same way: the generic rule, for structures none of the labelled sets shows.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cineprop.flow import FlowField, anchored_carry
from cineprop.refine import refine_roi, refiner_input
from cineprop.session_config import SessionConfig
from cineprop.training.augment import deform
from cineprop.training.synthetic_shapes import shape_change_pair

#: the carrier of the session's default
FLOW_METHOD = SessionConfig.flow_method
#: share of the 2D samples whose query is a dropout frame
DROPOUT = 0.15


def _sample(field: FlowField, mask: np.ndarray, painted: int, i: int, truth: np.ndarray,
            resolution: int) -> tuple[np.ndarray, np.ndarray] | None:
    """One ``(input 3×R×R float16, truth R×R bool)``; ``None`` when the carried mask is empty or the
    input does not fit float16."""
    carried = anchored_carry(field, mask, painted, i)
    roi = refine_roi(carried)
    if roi is None:
        return None
    x = refiner_input(field.frame(i), field.moved(painted, i), carried, roi, resolution).astype(np.float16)
    if not np.isfinite(x).all():            # a flat query crop: the moved frame overflows float16
        return None
    return x, roi.crop(truth.astype(np.float32), resolution, nearest=True) > 0.5


def cine_samples(frames: np.ndarray, labels: np.ndarray, resolution: int,
                 max_distance: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples of one cine (``frames`` ``H×W×T``, ``labels`` ``H×W×T`` ints): every (painted frame,
    label present there, other frame within ``max_distance``)."""
    field = FlowField(frames, FLOW_METHOD)
    out = []
    t = frames.shape[2]
    for painted in range(t):
        for label in (int(v) for v in np.unique(labels[:, :, painted]) if v):
            mask = (labels[:, :, painted] == label).astype(np.float32)
            for i in range(t):
                if i == painted or (max_distance is not None and abs(i - painted) > max_distance):
                    continue
                sample = _sample(field, mask, painted, i, labels[:, :, i] == label, resolution)
                if sample is not None:
                    out.append(sample)
    return out


def image_samples(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, resolution: int,
                  copies: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """``copies`` samples of one labelled image (``H×W`` in [0, 1], ``H×W`` bool): painted frame =
    a deformed copy (strength 0.5–2.5) with a random gamma and noise, query = the image; with
    probability :data:`DROPOUT` the query is a *dropout* frame (most of the signal lost under heavy
    noise, as in a bad echo frame), where the image gives no evidence and the carried mask must stay."""
    out = []
    for _ in range(copies):
        moved, moved_mask = deform(rng, image, mask, float(rng.uniform(0.5, 2.5)))
        moved = np.clip(moved, 0, 1) ** float(rng.uniform(0.7, 1.4))
        moved = moved + rng.normal(0, 0.03, moved.shape).astype(np.float32)
        query = image
        if rng.random() < DROPOUT:
            noise = rng.normal(0.3, float(rng.uniform(0.1, 0.4)), image.shape).astype(np.float32)
            query = np.clip(float(rng.uniform(0.15, 0.5)) * image + noise, 0, 1)
        field = FlowField(np.stack([moved, query], axis=-1), FLOW_METHOD)
        sample = _sample(field, moved_mask.astype(np.float32), 0, 1, mask, resolution)
        if sample is not None:
            out.append(sample)
    return out


def synthetic_samples(rng: np.random.Generator, count: int, resolution: int, size: int = 128,
                      progress: bool = True, vanish: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples of ``count`` random shape-change scenes (``size``², :func:`shape_change_pair`; the object
    absent from the query with probability ``vanish``)."""
    out = []
    for _ in tqdm(range(count), desc="refiner samples: synthetic", disable=not progress, leave=False):
        painted, painted_mask, query, query_mask = shape_change_pair(rng, size, vanish)
        field = FlowField(np.stack([painted, query], axis=-1), FLOW_METHOD)
        sample = _sample(field, painted_mask.astype(np.float32), 0, 1, query_mask, resolution)
        if sample is not None:
            out.append(sample)
    return out


def stack(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(N×3×R×R float16, N×R×R bool)``."""
    return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


def build_samples(cines, images, resolution: int, seed: int = 0, copies: int = 2,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a :class:`~cineprop.training.data.CineSet` (or ``None``) and a list of
    :class:`~cineprop.training.data.ImageSet`, stacked."""
    rng = np.random.default_rng(seed)
    samples = []
    if cines is not None:
        for frames, labels in tqdm(list(zip(cines.frames, cines.labels)), desc="refiner samples: cines",
                                   disable=not progress, leave=False):
            samples += cine_samples(frames, labels, resolution)
    for image_set in images:
        for image, mask in tqdm(list(zip(image_set.images, image_set.masks)), desc=f"refiner samples: {image_set.name}",
                                disable=not progress, leave=False):
            samples += image_samples(rng, image, mask, resolution, copies)
    return stack(samples)
