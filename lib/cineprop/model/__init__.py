"""Pure ``torch.nn`` modules of the method (no I/O, no per-cine state).

:class:`FewShotSegmenter` is the image phase's model; :class:`VideoSegmenter` the video phase's
(the image model plus its :class:`TemporalAttentionUnit`). A checkpoint's ``kind`` says which
(:func:`cineprop.checkpoints.load_model`).
"""

from cineprop.model.config import ModelConfig
from cineprop.model.segmenter import FewShotSegmenter, SupportEncoding
from cineprop.model.temporal_attention import TemporalAttentionUnit
from cineprop.model.video import VideoSegmenter

__all__ = ["FewShotSegmenter", "ModelConfig", "SupportEncoding", "TemporalAttentionUnit", "VideoSegmenter"]
