"""The learned method's image-phase propagator: a loaded image model → one session per cine.

``--method model`` builds it for an ``image`` checkpoint (:func:`cineprop.methods.learned_propagator`
chooses by the checkpoint's kind; a ``relearn`` checkpoint gets
:class:`~cineprop.relearn.propagator.TwoStagePropagator`).
"""

from __future__ import annotations

import torch

from cineprop.io.cine import Cine
from cineprop.propagation import Propagation
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import SupportSet


class ModelPropagator:
    """Propagate with a trained few-shot image segmenter, one :class:`PropagationSession` per cine.

    Args:
        model: the image model (eval mode, on ``device``), e.g. from :func:`cineprop.checkpoints.load_model`.
        payload: the checkpoint dict it came from (kept for reporting).
        device: torch device string.
        config: the session's settings (memory, flag threshold, ...).
    """

    name = "model"

    def __init__(self, model: torch.nn.Module, payload: dict | None = None, device: str = "cpu",
                 config: SessionConfig = SessionConfig()):
        self.model, self.payload, self.device, self.config = model, payload or {}, device, config

    def open_session(self, cine: Cine) -> PropagationSession:
        """A session for interactive use (add supports, propagate, correct, propagate again) whose results
        equal :meth:`propagate`'s (see :class:`cineprop.repropagate.SessionPropagator`; a relearned checkpoint
        is served by ``TwoStagePropagator``, whose stage 2 runs over the whole clip, so it offers no session)."""
        return PropagationSession(self.model, cine, self.config, self.device)

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        session = self.open_session(cine)
        session.set_supports(support)
        return session.propagate()
