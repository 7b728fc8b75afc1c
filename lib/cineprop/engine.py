"""The learned propagation method (``--method model``): checkpoint → model → one session per cine."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from cineprop.io.cine import Cine
from cineprop.propagation import Propagation
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import SupportSet


def configure_threads(device: str) -> None:
    """Use every core for CPU inference once (torch defaults to the physical cores, often fewer)."""
    if device == "cpu" and torch.get_num_threads() < (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)


class ModelPropagator:
    """Propagate with a trained few-shot segmenter.

    Args:
        checkpoint: a ``.pt`` written by ``cineprop train-image``/``relearn``; default the bundled one.
        device: torch device string.
        memory: feed confident predictions back as memory (see :class:`SessionConfig`).
        flag_threshold: confidence below which frames are flagged.
    """

    name = "model"

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", memory: bool = True,
                 flag_threshold: float | None = None, config: SessionConfig | None = None):
        from cineprop.checkpoints import load_model

        configure_threads(device)
        self.device = device
        self.checkpoint = checkpoint
        self.model, self.payload = load_model(checkpoint, device)
        config = config or SessionConfig()
        config = replace(config, memory=memory)
        if flag_threshold is not None:
            config = replace(config, flag_threshold=float(flag_threshold))
        self.config = config

    def session(self, cine: Cine) -> PropagationSession:
        """A session for interactive use (add supports, propagate, correct, propagate again)."""
        return PropagationSession(self.model, cine, self.config, self.device)

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        session = self.session(cine)
        session.set_supports(support)
        return session.propagate()
