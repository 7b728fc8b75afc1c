"""Cross-resolution fusion and the segmentation head.

At strides 8, 4 and 2 the query features are concatenated with the upsampled pseudo mask, the
(shot-weighted) features of the masked support images and the support mask, mixed by a 1×1
convolution and refined by a 3×3 block; coarser decoder outputs are upsampled and added
(top-down). The head is a 3×3 convolution then a 1×1 convolution to 2 classes (background,
foreground) with softmax applied by the caller.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class CrossResolutionFusion(nn.Module):
    """Fuse query, support and pseudo mask at strides 8, 4, 2 → ``B×decoder[2]×R/2×R/2`` features.

    Args:
        query_channels: backbone channels at strides 2, 4, 8 (``G`` is strides 2 and 4).
        decoder: output channels at strides 8, 4, 2.
        pseudo_channels: channels of the pseudo mask (2).
    """

    def __init__(self, query_channels: Sequence[int], decoder: Sequence[int], pseudo_channels: int = 2):
        super().__init__()
        c2, c4, c8 = query_channels
        d8, d4, d2 = decoder
        extra = pseudo_channels + 1  # pseudo mask + support mask
        self.mix8 = nn.Sequential(nn.Conv2d(2 * c8 + extra, d8, 1, bias=False), nn.BatchNorm2d(d8), nn.ReLU(inplace=True))
        self.mix4 = nn.Sequential(nn.Conv2d(2 * c4 + extra, d4, 1, bias=False), nn.BatchNorm2d(d4), nn.ReLU(inplace=True))
        self.mix2 = nn.Sequential(nn.Conv2d(2 * c2 + extra, d2, 1, bias=False), nn.BatchNorm2d(d2), nn.ReLU(inplace=True))
        self.refine8, self.refine4, self.refine2 = _block(d8), _block(d4), _block(d2)
        self.up8 = nn.Conv2d(d8, d4, 1)
        self.up4 = nn.Conv2d(d4, d2, 1)
        self.channels = d2

    def forward(self, query: Sequence[torch.Tensor], support: Sequence[torch.Tensor],
                support_mask: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: query features at strides 2, 4, 8 (``B×c×R/s×R/s``).
            support: shot-weighted masked-support features at the same strides.
            support_mask: ``B×1×R×R`` shot-weighted support mask in [0, 1].
            pseudo: ``B×2×R/8×R/8`` pseudo mask.

        Returns:
            ``B×decoder[2]×R/2×R/2`` fused features (what the TAU and the head consume).
        """
        outs = []
        for feats_q, feats_s, mix in zip(query[::-1], support[::-1], (self.mix8, self.mix4, self.mix2)):
            size = feats_q.shape[-2:]
            extra = [F.interpolate(pseudo, size=size, mode="bilinear", align_corners=False),
                     F.adaptive_avg_pool2d(support_mask, size)]
            outs.append(mix(torch.cat([feats_q, feats_s, *extra], dim=1)))
        x8, x4, x2 = outs
        d8 = self.refine8(x8)
        d4 = self.refine4(x4 + F.interpolate(self.up8(d8), size=x4.shape[-2:], mode="bilinear", align_corners=False))
        return self.refine2(x2 + F.interpolate(self.up4(d4), size=x2.shape[-2:], mode="bilinear", align_corners=False))


class SegmentationHead(nn.Module):
    """3×3 conv → ReLU → 1×1 conv to 2 classes, upsampled ×2 to the input resolution.

    Input ``B×C×R/2×R/2``; output logits ``B×2×R×R`` (softmax gives background/foreground).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(channels, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv1(self.relu(self.conv3(x)))
        return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
