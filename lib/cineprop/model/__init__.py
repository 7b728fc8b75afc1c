"""Pure ``torch.nn`` modules of the method (no I/O, no per-cine state)."""

from cineprop.model.config import ModelConfig
from cineprop.model.segmenter import FewShotSegmenter, SupportEncoding

__all__ = ["FewShotSegmenter", "ModelConfig", "SupportEncoding"]
