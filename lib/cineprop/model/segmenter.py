"""The image-phase few-shot segmenter, exposed as named stages.

``extract_features`` (backbone F on the query) → ``encode_support`` (backbone on support ⊙ mask)
→ ``pseudo_mask`` (cosine similarity, min-max normalised) → ``fuse`` (cross-resolution fusion) →
``decode`` (3×3 + 1×1 head). ``forward`` chains them for training. Between ``fuse`` and ``decode``
sits ``temporal_attend``: the identity here (an image model sees each frame alone), the Temporal
Attention Unit in the video phase's :class:`~cineprop.model.video.VideoSegmenter`.

Shapes: ``R`` is ``config.resolution``; images are ``N×1×R×R`` in [0, 1]; masks ``×1×R×R`` in
[0, 1]; ``K`` support shots; logits are ``B×2×R×R`` (background, foreground).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cineprop.model.backbone import build_backbone
from cineprop.model.config import ModelConfig
from cineprop.model.fusion import CrossResolutionFusion, SegmentationHead
from cineprop.model.pseudo_mask import pseudo_mask


@dataclass
class SupportEncoding:
    """Features of the masked support images of one batch.

    Attributes:
        features: backbone outputs at strides 2, 4, 8, each ``B×K×c×R/s×R/s``.
        embedding: ``B×K×C×R/8×R/8`` high-level embedding for the pseudo mask.
        masks: ``B×K×1×R×R`` support masks.
    """

    features: list[torch.Tensor]
    embedding: torch.Tensor
    masks: torch.Tensor


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _unflat(x: torch.Tensor, b: int) -> torch.Tensor:
    return x.view(b, -1, *x.shape[1:])


class FewShotSegmenter(nn.Module):
    """Pseudo-mask-guided cross-resolution fusion network (image phase of the method)."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.widths, config.blocks)
        c2, c4, c8, c16 = self.backbone.channels
        self.embedding_channels = c8 + c16
        self.fusion = CrossResolutionFusion((c2, c4, c8), config.decoder)
        self.head = SegmentationHead(config.decoder[2])
        self.register_buffer("pixel_mean", torch.tensor(0.4), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(0.25), persistent=False)

    # ---- stages -------------------------------------------------------------------------------
    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.pixel_mean) / self.pixel_std

    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone F on ``N×1×R×R`` images → features at strides 2, 4, 8, 16."""
        return self.backbone(self._normalise(images))

    @staticmethod
    def embed(features: list[torch.Tensor]) -> torch.Tensor:
        """High-level embedding for the pseudo mask: stride-8 ⊕ upsampled stride-16 features."""
        f8, f16 = features[2], features[3]
        return torch.cat([f8, F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)], 1)

    def encode_support(self, images: torch.Tensor, masks: torch.Tensor) -> SupportEncoding:
        """Backbone on ``support ⊙ mask`` (everything outside the mask zeroed).

        Args:
            images, masks: ``B×K×1×R×R``.
        """
        b = images.shape[0]
        # zero outside the mask in *normalised* units, so "outside" reads as mean intensity, not as dark tissue
        feats = self.backbone(_flat(self._normalise(images) * masks))
        return SupportEncoding([_unflat(f, b) for f in feats[:3]], _unflat(self.embed(feats), b), masks)

    def encode_memory(self, features: list[torch.Tensor], masks: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encode a *predicted* frame from its cached features (no extra backbone pass).

        Args:
            features: the frame's backbone features at strides 2, 4, 8, 16 (``N×c×R/s×R/s``).
            masks: ``N×1×R×R`` predicted masks in [0, 1].

        Returns:
            masked features at strides 2, 4, 8 and the ``N×C×R/8×R/8`` embedding, as in
            :meth:`encode_support` but without the shot axis.
        """
        masked = [f * F.adaptive_avg_pool2d(masks, f.shape[-2:]) for f in features[:4]]
        return masked[:3], self.embed(masked)

    def pseudo_mask(self, query_embedding: torch.Tensor, support: SupportEncoding,
                    weights: torch.Tensor) -> torch.Tensor:
        """``B×2×R/8×R/8`` pseudo mask (see :func:`cineprop.model.pseudo_mask.pseudo_mask`)."""
        small = F.adaptive_avg_pool2d(_flat(support.masks), query_embedding.shape[-2:])
        return pseudo_mask(query_embedding, support.embedding, _unflat(small, query_embedding.shape[0]), weights)

    @staticmethod
    def pool_support(support: SupportEncoding, weights: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Average the shots with the normalised ``weights`` (``B×K``).

        Returns the support features at strides 2, 4, 8 (``B×c×R/s×R/s``) and the ``B×1×R×R`` mask
        the fusion consumes (the video phase caches these for a frozen backbone).
        """
        w = weights.clamp_min(0)
        w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
        w = w / w.sum(1, keepdim=True)

        def pool(x: torch.Tensor) -> torch.Tensor:
            return (x * w.view(*w.shape, *([1] * (x.dim() - 2)))).sum(1)

        return [pool(f) for f in support.features], pool(support.masks)

    def fuse(self, query_features: list[torch.Tensor], support: SupportEncoding, weights: torch.Tensor,
             pseudo: torch.Tensor) -> torch.Tensor:
        """Cross-resolution fusion → ``B×C×R/2×R/2`` fused features.

        Support features and masks are averaged over shots with the normalised ``weights`` (``B×K``).
        """
        features, mask = self.pool_support(support, weights)
        return self.fusion(query_features[:3], features, mask, pseudo)

    #: frames of context on each side :meth:`temporal_attend` reads (none: each frame alone)
    temporal_window = 0

    def temporal_attend(self, fused: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Identity on ``B×T×C×R/2×R/2`` fused features (the video model attends across frames here)."""
        return fused

    def decode(self, fused: torch.Tensor) -> torch.Tensor:
        """Head: ``B×C×R/2×R/2`` → logits ``B×2×R×R``."""
        return self.head(fused)

    # ---- training forward ---------------------------------------------------------------------
    def forward(self, query: torch.Tensor, support: torch.Tensor, support_mask: torch.Tensor,
                weights: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, memory_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Segment ``B×1×R×R`` queries from ``B×K×1×R×R`` supports → logits ``B×2×R×R``.

        ``memory``/``memory_mask`` (``B×1×R×R``) add one feature-masked shot per item, as the
        session does with its confident predictions; ``memory_weight`` (``B``) is 0 where an item
        has no memory. Query, memory and masked support images go through the backbone in *one*
        batch, so batch-norm statistics in training match the running statistics used at inference.
        """
        b, k = support.shape[:2]
        if weights is None:
            weights = torch.ones(b, k, device=support.device)
        has_memory = torch.zeros(b, dtype=torch.bool, device=query.device) if memory is None else memory_weight > 0
        n_mem = int(has_memory.sum())
        masked = _flat(self._normalise(support) * support_mask)
        feats = self.backbone(torch.cat([self._normalise(query), self._normalise(memory[has_memory])
                                         if n_mem else query[:0], masked]))
        q_feats = [f[:b] for f in feats]
        s_feats = [f[b + n_mem:] for f in feats]
        s_enc = SupportEncoding([_unflat(f, b) for f in s_feats[:3]], _unflat(self.embed(s_feats), b), support_mask)
        if memory is not None:
            idx = torch.nonzero(has_memory).squeeze(1)
            mem_mask = memory_mask * has_memory.view(b, 1, 1, 1).float()
            full = [f.new_zeros((b, *f.shape[1:])).index_copy(0, idx, f[b:b + n_mem]) for f in feats]
            m_feats, m_emb = self.encode_memory(full, mem_mask)
            s_enc = SupportEncoding([torch.cat([s, m[:, None]], 1) for s, m in zip(s_enc.features, m_feats)],
                                    torch.cat([s_enc.embedding, m_emb[:, None]], 1),
                                    torch.cat([s_enc.masks, mem_mask[:, None]], 1))
            weights = torch.cat([weights, (memory_weight * has_memory.float())[:, None]], 1)
        pseudo = self.pseudo_mask(self.embed(q_feats), s_enc, weights)
        return self.decode(self.fuse(q_feats, s_enc, weights, pseudo))
