"""Live propagation sessions of recently used studies, so a correction re-propagates only what changed.

A user propagates, reviews a flagged frame, paints it and asks again. Without this cache every
request would rebuild the method's per-cine state (backbone features of every frame, flow fields,
sweep results). :class:`SessionCache` keeps one :class:`cineprop.repropagate.Repropagator` per
``(image file, slice position)`` for methods that can reuse work (others simply run again and
nothing is kept), bounded by a number of studies and a memory cap with least-recently-used
eviction. An entry is dropped and rebuilt when the image file changes (modification time or size)
or the propagator changes (another method, or a newly published checkpoint: the service builds a
new propagator object and clears the cache).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

from cineprop.io import Cine
from cineprop.propagation import Propagation, Propagator
from cineprop.repropagate import Repropagator, SessionPropagator
from cineprop.support import SupportSet

logger = logging.getLogger(__name__)


@dataclass
class _Entry:
    stamp: tuple           # e.g. (image mtime_ns, image size): any change means a new session
    live: Repropagator
    nbytes: int = 0


def image_stamp(path: str | os.PathLike) -> tuple[int, int]:
    """``(mtime_ns, size)`` of an image file: a rewritten study gets a new session."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


class SessionCache:
    """Bounded LRU of live sessions; thread-safe.

    Args:
        max_sessions: sessions kept (0 disables the cache).
        max_bytes: total memory of the kept sessions (:meth:`Repropagator.memory_bytes`); the least
            recently used are evicted beyond it, and a session larger than it alone is not kept.
    """

    def __init__(self, max_sessions: int = 4, max_bytes: int = 2 << 30):
        self.max_sessions = int(max_sessions)
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.counts = {"hits": 0, "misses": 0, "invalidated": 0, "evicted": 0}

    def propagate(self, key: Hashable, stamp: tuple, propagator: Propagator, cine: Cine,
                  support: SupportSet) -> Propagation:
        """Propagate ``support`` through ``cine`` with the live session of ``key`` (opened if needed).

        Args:
            key: the study and slice position, e.g. ``(image path, slice index)``.
            stamp: what must not change for the session to stay valid (see :func:`image_stamp`).
        """
        if self.max_sessions <= 0 or not isinstance(propagator, SessionPropagator):
            return Repropagator(propagator, cine).propagate(support)    # nothing worth keeping
        live = self._live(key, stamp, propagator, cine)
        result = live.propagate(support)
        if live.reuses_work:
            self._keep(key, stamp, live)
        return result

    def _live(self, key: Hashable, stamp: tuple, propagator: Propagator, cine: Cine) -> Repropagator:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.stamp == stamp and entry.live.propagator is propagator:
                self._entries.move_to_end(key)
                self.counts["hits"] += 1
                return entry.live
            if entry is not None:
                del self._entries[key]
                self.counts["invalidated"] += 1
                logger.info(f"cineprop: session of {key} dropped (image or model changed)")
            self.counts["misses"] += 1
        return Repropagator(propagator, cine)

    def _keep(self, key: Hashable, stamp: tuple, live: Repropagator) -> None:
        nbytes = live.memory_bytes()
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current.live is not live:
                return  # a concurrent request replaced it meanwhile; keep the newer one
            self._entries[key] = _Entry(stamp, live, nbytes)
            self._entries.move_to_end(key)
            while self._entries and (len(self._entries) > self.max_sessions or self._total() > self.max_bytes):
                old, _ = self._entries.popitem(last=False)
                self.counts["evicted"] += 1
                logger.info(f"cineprop: session of {old} evicted ({len(self._entries)} kept, "
                            f"{self._total() / 2**20:.0f} MB)")

    def _total(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict:
        """Sessions kept, their memory (MB), the caps and the hit/miss/invalidation/eviction counts."""
        with self._lock:
            return {"sessions": len(self._entries), "mb": round(self._total() / 2**20, 1),
                    "max_sessions": self.max_sessions, "max_mb": round(self.max_bytes / 2**20, 1), **self.counts}
