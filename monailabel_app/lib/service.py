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
from pathlib import Path
from typing import Iterable

import numpy as np

from cineprop.errors import CheckpointError, where
from cineprop.io import Cine
from cineprop.methods import accepted_options, build_propagator, method_options
from cineprop.propagation import Propagation, Propagator
from cineprop.support import SupportSet
from cineprop.volume_propagation import CineResult, VolumeResult, load_painted, propagate_volume
from lib.configs.settings import PUBLISHED_CHECKPOINT, AppSettings, SettingsError
from lib.session_cache import SessionCache, image_stamp

logger = logging.getLogger(__name__)

#: build_propagator option → the ``--conf`` key that sets it.
_OPTION_KEYS = {"checkpoint": "checkpoint", "device": "device", "steps": "relearn_steps", "flow_method": "flow_method",
                "flow_box": "flow_box"}


def _cine_report(r: CineResult, threshold: float) -> dict:
    p = r.propagation
    return {"name": r.cine.name, "slice_index": r.cine.slice_index, "frames": r.cine.num_frames,
            "support_frames": list(p.support_frames), "labels": r.support.labels,
            "confidence": [round(float(c), 4) for c in p.confidence], "flagged": p.flagged(threshold),
            "seconds": round(p.seconds, 3),
            "reused_session": bool(p.details.get("repropagation", {}).get("reused_session"))}


def frames_report(result: VolumeResult, threshold: float) -> dict:
    """Per-frame report: for 4D, a frame's confidence is its lowest over the propagated slice positions."""
    reports = [_cine_report(r, threshold) for r in result.cines]
    if len(reports) == 1:
        top = {k: reports[0][k] for k in ("support_frames", "confidence", "flagged")}
    else:
        confidence = np.min([r.propagation.confidence for r in result.cines], axis=0)
        top = {"support_frames": sorted({f for r in reports for f in r["support_frames"]}),
               "confidence": [round(float(c), 4) for c in confidence],
               "flagged": sorted({f for r in reports for f in r["flagged"]})}
    return {**top, "flag_threshold": threshold, "cines": reports}


def scores(result: VolumeResult, threshold: float) -> dict:
    """Study-level scores for active learning, over the query frames of every propagated cine."""
    query = result.query_confidence()
    flagged = sum(len(r.propagation.flagged(threshold)) for r in result.cines)
    return {"mean_confidence": round(float(np.mean(query)), 4) if query else 1.0,
            "min_confidence": round(float(np.min(query)), 4) if query else 1.0,
            "flagged": flagged, "query_frames": len(query), "flag_threshold": threshold}


class PropagationService:
    """The configured propagator, rebuilt when its checkpoint file changes; thread-safe."""

    def __init__(self, settings: AppSettings, model_dir: str | Path):
        self.settings = settings
        self.model_dir = Path(model_dir)
        accepted = accepted_options(settings.method)  # imports the method's options module only
        for option, value in self._given(settings.checkpoint).items():
            if value is not None and option not in accepted:
                raise SettingsError(f"--conf {_OPTION_KEYS[option]}: method {settings.method!r} takes no {option}")
        self._accepted = accepted
        self._lock = threading.Lock()
        self._propagator: Propagator | None = None
        self._key: tuple | None = None
        self.note: str | None = None  # why a fallback method is served
        self._active: str | None = None  # the method built
        #: live sessions of recent studies: a correction re-propagates only what changed
        self.sessions = SessionCache(settings.session_cache, settings.session_cache_mb * 2**20)

    def _given(self, checkpoint) -> dict:
        """The method options the ``--conf`` settings give (``None``: not given), with ``checkpoint``."""
        s = self.settings
        return {"checkpoint": checkpoint, "device": s.device, "steps": s.relearn_steps,
                "flow_method": s.flow_method, "flow_box": s.flow_box}

    def _takes(self, option: str) -> bool:
        return option in self._accepted

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
        return "checkpoint" in self._accepted

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
        # the fallback method may take fewer settings than the configured one: it ignores the others
        options = method_options(method, self._given(key[0] if key else None), ignore_unknown=True)
        start = time.perf_counter()
        propagator = build_propagator(method, options)
        logger.info(f"cineprop: built method {method!r} {options} in {time.perf_counter() - start:.2f} s")
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
            SupportError: nothing painted (on the chosen frames / slice positions); see
                :mod:`cineprop.volume_propagation` for the rule.
            CheckpointError: the configured checkpoint is missing or unusable.
        """
        volume, cines, painted = load_painted(image, support, slice_index)
        propagator = self.propagator()
        key, stamp = str(Path(image).resolve()), image_stamp(image)

        def propagate(cine: Cine, support_set: SupportSet) -> Propagation:
            return self.sessions.propagate((key, cine.slice_index), stamp, propagator, cine, support_set)

        return propagate_volume(volume, cines, painted, propagate, support_frames, ignored_labels)
