"""The Temporal Attention Unit (TAU): attention across neighbouring frames' fused features.

Inserted between the fusion module and the head of the image model. For frame ``t`` and pixel
``(y, x)`` the query is computed from frame ``t``'s fused feature there, keys and values from the
frames ``t − w .. t + w`` (``w = config.tau_window``) at the same pixel (keys see a 3×3
neighbourhood, so small motion between frames is tolerated); a learned bias per temporal offset
lets the unit prefer near frames. The output is residual::

    out_t = x_t + W_o · Σ_o softmax_o(q_t · k_{t+o} / √d + b_o) · v_{t+o}

``W_o`` starts at zero, so before relearning the TAU is the identity and the video model
(:class:`cineprop.model.VideoSegmenter`) predicts exactly what its image model predicts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TemporalAttentionUnit(nn.Module):
    """Per-pixel attention over ``±window`` frames.

    Args:
        channels: ``C`` of the fused features.
        window: frames attended to on each side.
        key_channels: ``d`` of queries, keys and values.
    """

    def __init__(self, channels: int, window: int = 2, key_channels: int = 16):
        super().__init__()
        self.window = int(window)
        self.key_channels = int(key_channels)
        self.norm = nn.GroupNorm(1, channels, affine=True)
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 3, 1, 1)
        self.value = nn.Conv2d(channels, key_channels, 1)
        self.offset_bias = nn.Parameter(torch.zeros(2 * self.window + 1))
        self.out = nn.Conv2d(key_channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: ``B×T×C×h×w`` fused features of ``T`` consecutive frames (``B``: labels or cines).
            valid: optional ``B×T`` bool; frames marked ``False`` are not attended to (each frame
                always attends to itself).

        Returns:
            ``B×T×C×h×w``.
        """
        b, t, c, h, w = x.shape
        flat = x.flatten(0, 1)
        z = self.norm(flat)
        q = self.query(z).view(b, t, -1, h, w)
        k = self.key(z).view(b, t, -1, h, w)
        v = self.value(z).view(b, t, -1, h, w)
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=x.device)
        scale = 1.0 / math.sqrt(self.key_channels)
        logits, values = [], []
        for j, offset in enumerate(range(-self.window, self.window + 1)):
            ks, vs, ok = _shift(k, offset), _shift(v, offset), _shift(valid, offset)
            if offset == 0:
                ok = torch.ones_like(ok)
            logit = (q * ks).sum(2) * scale + self.offset_bias[j]                  # B×T×h×w
            logits.append(logit.masked_fill(~ok[:, :, None, None], float("-inf")))
            values.append(vs)
        attention = torch.softmax(torch.stack(logits, 2), dim=2)                   # B×T×(2w+1)×h×w
        mixed = sum(attention[:, :, j, None] * values[j] for j in range(len(values)))  # B×T×d×h×w
        return x + self.out(mixed.flatten(0, 1)).view_as(x)


def _shift(x: torch.Tensor, offset: int) -> torch.Tensor:
    """``out[:, i] = x[:, i + offset]`` along dim 1, zero (or False) where ``i + offset`` is outside."""
    if offset == 0:
        return x
    t = x.shape[1]
    out = torch.zeros_like(x)
    if abs(offset) < t:
        if offset > 0:
            out[:, : t - offset] = x[:, offset:]
        else:
            out[:, -offset:] = x[:, : t + offset]
    return out
