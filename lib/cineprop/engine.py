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
    """Use every core this process may run on for CPU inference (torch defaults to the physical cores).

    An explicit ``OMP_NUM_THREADS`` wins (e.g. on a machine shared with a training job, where more
    threads than free cores make every step many times slower).
    """
    if device != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() < cores:
        torch.set_num_threads(cores)


class ModelPropagator:
    """Propagate with a trained few-shot segmenter.

    Args:
        checkpoint: a ``.pt`` written by ``cineprop train-image``/``relearn``; default the bundled one.
        device: torch device string.
        memory: feed confident predictions back as memory (see :class:`SessionConfig`).
        flag_threshold: confidence below which frames are flagged.
        options: :class:`SessionConfig` fields by name (strings are converted), e.g.
            ``{"memory_threshold": "0"}`` from ``--option memory_threshold=0``.
    """

    name = "model"

    @staticmethod
    def option_names() -> list[str]:
        """Names ``--option`` may set: the :class:`SessionConfig` fields."""
        return list(SessionConfig.__dataclass_fields__)

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", memory: bool = True,
                 flag_threshold: float | None = None, config: SessionConfig | None = None,
                 options: dict | None = None):
        from cineprop.checkpoints import load_model

        configure_threads(device)
        self.device = device
        self.checkpoint = checkpoint
        self.model, self.payload = load_model(checkpoint, device)
        config = config or SessionConfig()
        config = replace(config, memory=memory).with_options(dict(options or {}))
        if flag_threshold is not None:
            config = replace(config, flag_threshold=float(flag_threshold))
        self.config = config
        #: a ``relearn`` checkpoint (TAU attached) runs the video phase's two-stage inference
        self.two_stage = None
        if getattr(self.model, "tau", None) is not None:
            from cineprop.relearn.propagator import TwoStagePropagator

            self.two_stage = TwoStagePropagator(model=self.model, payload=self.payload, device=device,
                                                session_config=config)

    def session(self, cine: Cine) -> PropagationSession:
        """A session for interactive use (add supports, propagate, correct, propagate again).

        For a relearned checkpoint this is stage 1 only (the image weights it stores).
        """
        model = self.model if self.two_stage is None else self.two_stage.stage1
        return PropagationSession(model, cine, self.config, self.device)

    def open_session(self, cine: Cine) -> PropagationSession | None:
        """A session whose results equal :meth:`propagate`'s (``None`` for a two-stage relearned checkpoint,
        whose stage 2 runs over the whole clip; see :class:`cineprop.repropagate.SessionPropagator`)."""
        return self.session(cine) if self.two_stage is None else None

    def propagate(self, cine: Cine, support: SupportSet) -> Propagation:
        if self.two_stage is not None:
            return self.two_stage.propagate(cine, support)
        session = self.session(cine)
        session.set_supports(support)
        return session.propagate()
