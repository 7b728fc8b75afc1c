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

:class:`Presence` loads a ``presence`` checkpoint (the bundled ``weights/cineprop_presence.pt``,
trained by ``cineprop train-presence`` on the refiner's samples) and says, from the same input, how
likely the painted structure has left the query frame (:mod:`cineprop.model.presence`):
``absent_probabilities([(query, moved, carried), ...])``.
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
#: The bundled presence checkpoint.
BUNDLED_PRESENCE = Path(__file__).resolve().parent / "weights" / "cineprop_presence.pt"
MARGIN = 0.5
MIN_SIDE = 32.0
#: crops per forward pass of the refiner
BATCH = 32


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


class _CropModel:
    """A trained crop model (input: :func:`refiner_input`) with its checkpoint's ``meta`` (CPU, eval)."""

    def __init__(self, model: torch.nn.Module, meta: dict | None = None):
        self.model = model.eval()
        self.resolution = model.config.resolution
        self.meta = meta or {}


class Refiner(_CropModel):
    """A trained :class:`~cineprop.model.refiner.CarrierRefiner` applied to carried masks."""

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Refiner":
        """Load a ``refiner`` checkpoint (``None``: the bundled one); loaded once per file version and
        shared (inference only, so sessions and threads may share it)."""
        return cls(*_load(_existing(path, BUNDLED_REFINER, "refiner")))

    def refine_crop(self, query: np.ndarray, moved: np.ndarray, carried: np.ndarray, step: float = 1.0) -> np.ndarray:
        """``carried`` (``H×W`` probability) refined inside :func:`refine_roi`: the refiner's residual,
        pasted back at full resolution and scaled by ``step`` (1: the whole correction), is added to the
        carried mask's logit; the same array if empty."""
        return self.refine_crops([(query, moved, carried)], step)[0]

    @torch.no_grad()
    def refine_crops(self, crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]], step: float = 1.0,
                     batch: int = BATCH) -> list[np.ndarray]:
        """:meth:`refine_crop` of each ``(query, moved, carried)``, ``batch`` crops per forward pass."""
        out = [carried for _, _, carried in crops]
        todo = [(n, roi) for n, (_, _, carried) in enumerate(crops) if (roi := refine_roi(carried)) is not None]
        for start in range(0, len(todo), batch):
            part = todo[start:start + batch]
            x = torch.from_numpy(np.stack([refiner_input(*crops[n], roi, self.resolution) for n, roi in part]))
            residuals = self.model.residual(x)[:, 0].numpy()
            for (n, roi), residual in zip(part, residuals):
                out[n] = _add_residual(crops[n][2], roi, residual, step)
        return out


def _add_residual(carried: np.ndarray, roi: Roi, residual: np.ndarray, step: float) -> np.ndarray:
    """``carried`` with ``step`` × ``residual`` (``R×R``, pasted into ``roi``) added to its logit there."""
    pasted = roi.paste(residual, carried.shape)
    inside = roi.paste(np.ones(residual.shape, np.float32), carried.shape) > 0.5
    out = carried.copy()
    logit = np.log(np.clip(carried[inside], EPS, 1 - EPS) / np.clip(1 - carried[inside], EPS, 1 - EPS))
    out[inside] = 1.0 / (1.0 + np.exp(-(logit + step * pasted[inside])))
    return out


class Presence(_CropModel):
    """A trained :class:`~cineprop.model.presence.PresenceNet` applied to carried masks."""

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Presence":
        """Load a ``presence`` checkpoint (``None``: the bundled one), once per file version (shared)."""
        return cls(*_load(_existing(path, BUNDLED_PRESENCE, "presence check"), "presence"))

    @torch.no_grad()
    def absent_probabilities(self, crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """For each ``(query, moved, carried)`` (``H×W``; ``moved``: the painted frame moved onto the
        query), how likely the structure carried as ``carried`` is absent from ``query``; 0 for an
        empty carried mask (nothing to judge). One forward pass for all."""
        out = np.zeros(len(crops), np.float32)
        inputs = {}
        for n, (query, moved, carried) in enumerate(crops):
            roi = refine_roi(carried)
            if roi is not None:
                inputs[n] = refiner_input(query, moved, carried, roi, self.resolution)
        if inputs:
            x = torch.from_numpy(np.stack(list(inputs.values())))
            out[list(inputs)] = torch.sigmoid(self.model(x)).numpy()
        return out


def _existing(path: str | os.PathLike | None, bundled: Path, what: str) -> Path:
    p = Path(path) if path is not None else bundled
    if not p.exists():
        raise CheckpointError(where(p, f"{what} checkpoint not found"))
    return p


def _load(p: Path, kind: str = "refiner") -> tuple[torch.nn.Module, dict]:
    """The model and meta of a ``kind`` checkpoint, read once per (file, modification time)."""
    return _read(str(p.resolve()), p.stat().st_mtime_ns, kind)


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, kind: str) -> tuple[torch.nn.Module, dict]:
    from cineprop.checkpoints import read_checkpoint
    from cineprop.model.presence import PresenceConfig, PresenceNet
    from cineprop.model.refiner import CarrierRefiner, RefinerConfig

    model_cls, config_cls, what = {"refiner": (CarrierRefiner, RefinerConfig, "carrier refiner"),
                                   "presence": (PresenceNet, PresenceConfig, "presence check")}[kind]
    payload = read_checkpoint(path)
    if payload.get("kind") != kind:
        raise CheckpointError(where(path, f"a {payload.get('kind')!r} checkpoint, not a {what}"))
    model = model_cls(config_cls.from_dict(payload["config"]))
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(where(path, f"weights do not match the {what}: missing {missing[:3]}, "
                                          f"unexpected {unexpected[:3]}"))
    return model.eval(), payload.get("meta") or {}
