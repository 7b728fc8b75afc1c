"""The one place the app calls the cineprop core: build the propagator, propagate a cine file.

:class:`PropagationService` builds the configured method with
``cineprop.methods.build_propagator`` on first use and rebuilds it when the checkpoint file's
modification time or size changes, so a checkpoint published by training (or copied in by an
administrator) as ``model/cineprop.pt`` is used by the next request without a restart. The infer task, the scoring method
and batch infer share it (batch infer and scoring run in their own process, each with its own).

Array layout: image files are ``H×W×T`` (one cine) or ``H×W×Z×T`` (one cine per slice position
``z``); support and result label volumes have the image's shape. Slice positions without painted
frames are not propagated and stay empty in the result.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from cineprop.errors import CheckpointError, SupportError, where
from cineprop.io import Cine, Volume, assemble_labels, labels_for, load_cines, read_label
from cineprop.methods import build_propagator, options
from cineprop.propagation import Propagation, Propagator
from cineprop.support import SupportSet
from lib.configs.settings import PUBLISHED_CHECKPOINT, AppSettings, SettingsError
from lib.session_cache import SessionCache, image_stamp

logger = logging.getLogger(__name__)

#: build_propagator option → the ``--conf`` key that sets it.
_OPTION_KEYS = {"checkpoint": "checkpoint", "device": "device", "steps": "relearn_steps"}


@dataclass
class CineResult:
    """One propagated cine: the cine, the support it started from and the propagation."""

    cine: Cine
    support: SupportSet
    propagation: Propagation

    def report(self, threshold: float) -> dict:
        p = self.propagation
        return {"name": self.cine.name, "slice_index": self.cine.slice_index, "frames": self.cine.num_frames,
                "support_frames": list(p.support_frames), "labels": self.support.labels,
                "confidence": [round(float(c), 4) for c in p.confidence], "flagged": p.flagged(threshold),
                "seconds": round(p.seconds, 3),
                "reused_session": bool(p.details.get("repropagation", {}).get("reused_session"))}


@dataclass
class VolumeResult:
    """Propagation of one image file.

    Attributes:
        volume: the image (its geometry is written back with the result).
        cines: the propagated cines (one for 3D; the painted slice positions for 4D).
        labels: the result, uint8 with the image's shape.
    """

    volume: Volume
    cines: list[CineResult]
    labels: np.ndarray

    def support_only(self) -> np.ndarray:
        """The support actually used as a label volume of the image's shape (support frames only)."""
        out = np.zeros(self.volume.shape, dtype=np.uint8)
        for r in self.cines:
            view = labels_for(out, r.cine)  # a view into ``out`` (the cine's slice position)
            for frame in r.support.frames:
                view[:, :, frame] = r.support.label_array(frame)
        return out

    def frames(self, threshold: float) -> dict:
        """Per-frame report: for 4D, a frame's confidence is its lowest over the propagated slice positions."""
        reports = [r.report(threshold) for r in self.cines]
        if len(reports) == 1:
            top = {k: reports[0][k] for k in ("support_frames", "confidence", "flagged")}
        else:
            confidence = np.min([r.propagation.confidence for r in self.cines], axis=0)
            top = {"support_frames": sorted({f for r in reports for f in r["support_frames"]}),
                   "confidence": [round(float(c), 4) for c in confidence],
                   "flagged": sorted({f for r in reports for f in r["flagged"]})}
        return {**top, "flag_threshold": threshold, "cines": reports}

    def scores(self, threshold: float) -> dict:
        """Study-level scores for active learning, over the query frames of every propagated cine."""
        query, flagged = [], 0
        for r in self.cines:
            support = set(r.propagation.support_frames)
            query += [float(c) for i, c in enumerate(r.propagation.confidence) if i not in support]
            flagged += len(r.propagation.flagged(threshold))
        return {"mean_confidence": round(float(np.mean(query)), 4) if query else 1.0,
                "min_confidence": round(float(np.min(query)), 4) if query else 1.0,
                "flagged": flagged, "query_frames": len(query), "flag_threshold": threshold}


class PropagationService:
    """The configured propagator, rebuilt when its checkpoint file changes; thread-safe."""

    def __init__(self, settings: AppSettings, model_dir: str | Path):
        self.settings = settings
        self.model_dir = Path(model_dir)
        accepted = options(settings.method)  # imports the method's module only (cheap)
        given = {"checkpoint": settings.checkpoint, "device": settings.device, "steps": settings.relearn_steps}
        for option, value in given.items():
            if value is not None and accepted is not None and option not in accepted:
                raise SettingsError(f"--conf {_OPTION_KEYS[option]}: method {settings.method!r} takes no {option}")
        self._accepted = accepted
        self._lock = threading.Lock()
        self._propagator: Propagator | None = None
        self._key: tuple | None = None
        self.note: str | None = None  # why a fallback method is served
        self._active: str | None = None  # the method built
        #: live sessions of recent studies: a correction re-propagates only what changed
        self.sessions = SessionCache(settings.session_cache, settings.session_cache_mb * 2**20)

    def _takes(self, option: str) -> bool:
        return self._accepted is None or option in self._accepted

    def checkpoint(self) -> Path | None:
        """The checkpoint in use: ``model/cineprop.pt`` if present, else ``--conf checkpoint``, else ``None``.

        ``model/cineprop.pt`` is what the train tasks publish (trained from the checkpoint served
        before), so it supersedes ``--conf checkpoint``; deleting it rolls back to that one.
        """
        if not self._takes("checkpoint"):
            return None
        published = self.model_dir / PUBLISHED_CHECKPOINT
        if published.is_file():
            return published
        return self.settings.checkpoint

    def trains(self) -> bool:
        """Whether the method loads a checkpoint, i.e. whether training can change what is served."""
        return self._accepted is not None and "checkpoint" in self._accepted

    def _fingerprint(self) -> tuple | None:
        path = self.checkpoint()
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            raise CheckpointError(where(path, "checkpoint file not found")) from None
        return str(path), stat.st_mtime_ns, stat.st_size

    def _build(self, method: str, key: tuple | None) -> Propagator:
        accepted = options(method)
        opts = {"checkpoint": key[0] if key else None, "device": self.settings.device,
                "steps": self.settings.relearn_steps}
        opts = {k: v for k, v in opts.items() if v is not None and (accepted is None or k in accepted)}
        start = time.perf_counter()
        propagator = build_propagator(method, **opts)
        logger.info(f"cineprop: built method {method!r} {opts or ''} in {time.perf_counter() - start:.2f} s")
        return propagator

    def propagator(self) -> Propagator:
        """The propagator, (re)built if the checkpoint file changed since the last call.

        When the method was not configured explicitly and its weights cannot be loaded
        (``CheckpointError``), :attr:`AppSettings.fallback` is built instead and :meth:`describe`
        says why; a checkpoint published later is tried again.
        """
        with self._lock:
            key = self._fingerprint()
            if self._propagator is None or key != self._key:
                if self._propagator is not None:
                    logger.info(f"cineprop: checkpoint changed ({key[0] if key else 'none'}): rebuilding")
                try:
                    propagator, self.note = self._build(self.settings.method, key), None
                    self._active = self.settings.method
                except CheckpointError as exc:
                    if not self.settings.fallback:
                        raise
                    propagator, self._active = self._build(self.settings.fallback, None), self.settings.fallback
                    self.note = (f"method {self.settings.method!r} unavailable ({exc}); serving "
                                 f"{self.settings.fallback!r} until a checkpoint is published in {self.model_dir}")
                    logger.warning(f"cineprop: {self.note}")
                self._propagator, self._key = propagator, key
                self.sessions.clear()  # sessions of the previous model must not answer for the new one
            return self._propagator

    def describe(self) -> dict:
        """The method actually served (once built), its checkpoint and why it differs from the configured one."""
        path = self.checkpoint()
        method = self._active or self.settings.method
        return {"method": method, "checkpoint": str(path) if path and method == self.settings.method else None,
                "note": self.note or self.settings.note}

    def propagate_file(self, image: str | Path, support: str | Path, support_frames: Iterable[int] | None = None,
                       slice_index: int | None = None, ignored_labels: Iterable[int] = ()) -> VolumeResult:
        """Propagate the painted frames of the label file ``support`` through the image file ``image``.

        Args:
            support_frames: use only these frames of the support (default: every painted frame).
            slice_index: 4D images: only this slice position.
            ignored_labels: label values treated as unpainted (e.g. background scribbles).

        Raises:
            InputError: unreadable files, label shape ≠ image shape.
            SupportError: nothing painted (on the chosen frames / slice positions).
            CheckpointError: the configured checkpoint is missing or unusable.
        """
        volume, cines = load_cines(image, slice_index)
        painted = read_label(support, like=volume).array
        ignored = [int(v) for v in ignored_labels]
        if ignored:
            painted = np.where(np.isin(painted, ignored), 0, painted).astype(np.uint8)
        frames = None if support_frames is None else sorted(set(support_frames))
        propagator = self.propagator()
        results = []
        for cine in cines:
            labels = labels_for(painted, cine)
            chosen = labels if frames is None else labels[:, :, [f for f in frames if 0 <= f < cine.num_frames]]
            if len(cines) > 1 and not chosen.any():
                continue  # 4D: slice positions nobody painted stay empty
            support_set = SupportSet.from_labels(labels, frames)
            result = self.sessions.propagate((str(Path(image).resolve()), cine.slice_index), image_stamp(image),
                                             propagator, cine, support_set)
            results.append(CineResult(cine, support_set, result))
        if not results:
            on = f" on frames {list(frames)}" if frames is not None else ""
            raise SupportError(f"no support: no slice position has painted frames{on}")
        labels = assemble_labels(volume, [(r.cine, r.propagation.labels) for r in results])
        return VolumeResult(volume, results, labels)
