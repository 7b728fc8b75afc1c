"""Propagate one cine again and again as its support changes, reusing what the method can reuse.

A radiologist propagates, reviews, paints one more frame and propagates again. Methods that keep
per-cine state (``model``: a :class:`~cineprop.session.PropagationSession` with cached features
and sweeps) offer ``open_session(cine)``; for them every call after the first recomputes only the
frames whose nearest supports changed. Other methods (``copy``, ``flow``, ``relearn``, …) simply
run again. Front ends (``cineprop simulate``, ``cineprop predict`` with several support files, the
MONAI Label app's session cache) all go through :class:`Repropagator`, so a method registered later
gets the same treatment without changes here.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from cineprop.io.cine import Cine
from cineprop.propagation import Propagation, Propagator
from cineprop.support import SupportSet


class LiveSession(Protocol):
    """Per-cine state of a method that can re-propagate incrementally (see :class:`PropagationSession`)."""

    def set_supports(self, support: SupportSet) -> None: ...

    def propagate(self) -> Propagation: ...

    def memory_bytes(self) -> int: ...


@runtime_checkable
class SessionPropagator(Protocol):
    """A method whose results can be recomputed incrementally.

    ``open_session(cine)`` returns a fresh :class:`LiveSession` whose ``propagate()`` after
    ``set_supports(s)`` gives what ``propagate(cine, s)`` gives, or ``None`` when this
    configuration of the method has no such session (e.g. a two-stage relearned checkpoint).
    """

    def open_session(self, cine: Cine) -> LiveSession | None: ...


class Repropagator:
    """One cine, propagated from successive supports; one session reused when the method has one.

    Thread-safe: concurrent calls on the same instance run one after the other.
    """

    def __init__(self, propagator: Propagator, cine: Cine):
        self.propagator = propagator
        self.cine = cine
        self.session = propagator.open_session(cine) if isinstance(propagator, SessionPropagator) else None
        self.runs = 0
        self._lock = threading.Lock()

    @property
    def reuses_work(self) -> bool:
        """Whether later calls recompute only what changed (else each call is a full run)."""
        return self.session is not None

    def propagate(self, support: SupportSet) -> Propagation:
        """Segment every frame of the cine from ``support`` (which may add, change or drop painted frames)."""
        with self._lock:
            if self.session is None:
                result = self.propagator.propagate(self.cine, support)
            else:
                self.session.set_supports(support)
                result = self.session.propagate()
            self.runs += 1
            result.details["repropagation"] = {"run": self.runs, "reused_session": self.reuses_work and self.runs > 1}
            return result

    def memory_bytes(self) -> int:
        """Bytes held between calls (0 for methods that keep nothing)."""
        return self.session.memory_bytes() if self.session is not None else 0
