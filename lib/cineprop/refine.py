"""Registration-guided refinement of carried masks (:class:`~cineprop.model.refiner.CarrierRefiner`).

One rule makes the refiner's input, at training and at inference (:func:`refiner_input`): a square
ROI around the carried mask (probability > 0.5), grown by :data:`MARGIN` × its larger side on
each edge and at least :data:`MIN_SIDE` pixels, resized to the refiner's resolution; the query
frame and the moved painted frame are standardised together by the query crop's mean and spread.
The refined probability is pasted back into the ROI; outside it the carried mask is unchanged, and
a carried mask with no pixel above 0.5 is returned as it is (nothing to refine around).

:class:`Refiner` loads a ``refiner`` checkpoint (the bundled ``weights/cineprop_refiner.pt``, trained
by ``cineprop train-refiner``: docs/model-card.md) and refines one carried mask given its query
frame and the painted frame moved onto it: ``refine_crop(query, moved, carried)``; the carriers
call it (:class:`cineprop.baselines.WarpPropagator`) on the frames registration does not explain.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from cineprop.errors import CheckpointError, where
from cineprop.model.refiner import EPS
from cineprop.roi import Roi, bounding_box, roi_around

#: The bundled refiner checkpoint.
BUNDLED_REFINER = Path(__file__).resolve().parent / "weights" / "cineprop_refiner.pt"
MARGIN = 0.5
MIN_SIDE = 32.0


def refine_roi(carried: np.ndarray) -> Roi | None:
    """The square ROI the refiner sees around ``carried`` (``H×W`` probability); ``None`` if empty."""
    box = bounding_box([carried > 0.5])
    return None if box is None else roi_around(box, carried.shape, MARGIN, MIN_SIDE)


def refiner_input(query: np.ndarray, moved: np.ndarray, carried: np.ndarray, roi: Roi, resolution: int) -> np.ndarray:
    """``3×R×R`` float32: the query frame, the moved painted frame (both ``H×W`` in one intensity
    scale, standardised by the query crop) and the carried probability, cropped to ``roi``."""
    q, m = roi.crop(query, resolution), roi.crop(moved, resolution)
    mean, spread = float(q.mean()), float(q.std()) + 1e-3 * (abs(float(q.mean())) + 1.0)
    return np.stack([(q - mean) / spread, (m - mean) / spread, np.clip(roi.crop(carried, resolution), 0, 1)])


class Refiner:
    """A trained :class:`~cineprop.model.refiner.CarrierRefiner` applied to carried masks (CPU, eval)."""

    def __init__(self, model: torch.nn.Module, meta: dict | None = None):
        self.model = model.eval()
        self.resolution = model.config.resolution
        self.meta = meta or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Refiner":
        """Load a ``refiner`` checkpoint (``None``: the bundled one); loaded once per file version and
        shared (inference only, so sessions and threads may share it)."""
        p = Path(path) if path is not None else BUNDLED_REFINER
        if not p.exists():
            raise CheckpointError(where(p, "refiner checkpoint not found"))
        return _load(str(p.resolve()), p.stat().st_mtime_ns)

    @classmethod
    def _from_file(cls, p: Path) -> "Refiner":
        from cineprop.checkpoints import read_checkpoint
        from cineprop.model.refiner import CarrierRefiner, RefinerConfig

        payload = read_checkpoint(p)
        if payload.get("kind") != "refiner":
            raise CheckpointError(where(p, f"a {payload.get('kind')!r} checkpoint, not a carrier refiner"))
        model = CarrierRefiner(RefinerConfig.from_dict(payload["config"]))
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        if missing or unexpected:
            raise CheckpointError(where(p, f"weights do not match the refiner: missing {missing[:3]}, "
                                           f"unexpected {unexpected[:3]}"))
        return cls(model, payload.get("meta"))

    @torch.no_grad()
    def refine_crop(self, query: np.ndarray, moved: np.ndarray, carried: np.ndarray) -> np.ndarray:
        """``carried`` (``H×W`` probability) refined inside :func:`refine_roi`: the refiner's residual,
        pasted back at full resolution, is added to the carried mask's logit; the same array if empty."""
        roi = refine_roi(carried)
        if roi is None:
            return carried
        x = torch.from_numpy(refiner_input(query, moved, carried, roi, self.resolution))[None]
        residual = roi.paste(self.model.residual(x)[0, 0].numpy(), carried.shape)
        inside = roi.paste(np.ones(x.shape[-2:], np.float32), carried.shape) > 0.5
        out = carried.copy()
        logit = np.log(np.clip(carried[inside], EPS, 1 - EPS) / np.clip(1 - carried[inside], EPS, 1 - EPS))
        out[inside] = 1.0 / (1.0 + np.exp(-(logit + residual[inside])))
        return out


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Refiner:
    """:meth:`Refiner._from_file`, once per (file, modification time)."""
    return Refiner._from_file(Path(path))
