"""The video-phase segmenter: the image segmenter plus its Temporal Attention Unit.

Stages, for ``T`` frames of one cine at a time (the encoder stages are the image model's,
:class:`~cineprop.model.FewShotSegmenter`):

``fuse`` (per frame, ``N×C×R/2×R/2``) → ``temporal_attend`` (the TAU over ``±temporal_window``
frames, ``B×T×C×h×w`` → same) → ``decode`` (per frame, logits ``N×2×R×R``).

It *is* an image segmenter (a subclass), so the two-stage inference and relearning call the same
stages on the image model (the teacher, whose ``temporal_attend`` is the identity) and on the
video model (the student). Subclassing also keeps the checkpoint format: the image weights keep
their names and the TAU's are ``tau.*``, as in every ``relearn`` checkpoint written so far.
"""

from __future__ import annotations

import torch

from cineprop.model.config import ModelConfig
from cineprop.model.segmenter import FewShotSegmenter
from cineprop.model.temporal_attention import TemporalAttentionUnit


class VideoSegmenter(FewShotSegmenter):
    """:class:`FewShotSegmenter` with a :class:`TemporalAttentionUnit` between ``fuse`` and ``decode``.

    Args:
        config: the architecture; the TAU has ``config.decoder[2]`` channels and attends to
            ``config.tau_window`` frames on each side.
        seed: seeds the TAU's initialisation (random, but output-neutral: its output layer starts
            at zero) without moving the caller's random stream; ``None`` draws from it.
    """

    def __init__(self, config: ModelConfig = ModelConfig(), seed: int | None = None):
        super().__init__(config)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.tau = TemporalAttentionUnit(config.decoder[2], config.tau_window)

    @classmethod
    def from_image(cls, image: FewShotSegmenter, seed: int | None = None) -> "VideoSegmenter":
        """A video segmenter with ``image``'s weights (a copy) and a fresh, identity TAU.

        ``image`` is left untouched. If it is already a :class:`VideoSegmenter` its TAU is copied
        too. Device, train/eval mode and ``requires_grad`` flags follow ``image``; the caller's
        random stream does not move.
        """
        with torch.random.fork_rng(devices=[]):      # the image part's initialisation is overwritten below
            video = cls(image.config, seed)
        missing, unexpected = video.load_state_dict(image.state_dict(), strict=False)
        if unexpected or any(not key.startswith("tau.") for key in missing):
            raise ValueError(f"not an image model of this config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        flags = dict(image.named_parameters())
        for name, p in video.named_parameters():
            if name in flags:
                p.requires_grad_(flags[name].requires_grad)
        return video.to(next(image.parameters()).device).train(image.training)

    @property
    def temporal_window(self) -> int:
        """Frames of context on each side ``temporal_attend`` reads."""
        return self.tau.window

    def temporal_attend(self, fused: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The TAU on the fused features of consecutive frames.

        Args:
            fused: ``B×T×C×R/2×R/2`` (``B``: labels or cines, ``T`` consecutive frames).
            valid: optional ``B×T`` bool; frames marked ``False`` are not attended to.

        Returns:
            ``B×T×C×R/2×R/2``, what ``decode`` takes frame by frame.
        """
        return self.tau(fused, valid)
