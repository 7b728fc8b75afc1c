"""The pseudo mask: where does the query look like the masked support?

``p = cos(F(query), F(support ⊙ mask))`` per query location, reduced over the support's feature
vectors inside the (downsampled) mask, then min-max normalised to [0, 1] per shot. Two reductions
are returned as two channels: the maximum (the best-matching support vector; keeps thin and
multi-part structures) and the mean (cosine with the masked-average prototype; robust to noise).
Shots are combined with per-shot weights (temporally nearer shots weigh more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of ``…×h×w`` to [0, 1] (a constant map becomes 0)."""
    flat = x.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(_EPS)).view_as(x)


def pseudo_mask(query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    """Cosine-similarity pseudo mask.

    Args:
        query: ``B×C×h×w`` query embedding.
        support: ``B×K×C×h×w`` embeddings of the masked support images.
        mask: ``B×K×1×h×w`` support masks at the embedding's resolution, values in [0, 1].
        weights: ``B×K`` non-negative shot weights (rows need not sum to 1; all-zero rows are
            treated as uniform).

    Returns:
        ``B×2×h×w`` in [0, 1]: channel 0 the max-reduction, channel 1 the prototype similarity.
    """
    b, k, c, h, w = support.shape
    q = F.normalize(query.flatten(2), dim=1)                           # B×C×hw
    s = F.normalize(support.flatten(3), dim=2)                          # B×K×C×hw
    m = mask.flatten(2)                                                 # B×K×hw (1 channel squeezed)
    inside = m > 0.5
    # a tiny object may vanish when downsampled: then use its strongest location
    none = ~inside.any(dim=-1, keepdim=True)
    inside = inside | (none & (m == m.max(dim=-1, keepdim=True).values) & (m > 0))
    sim = torch.einsum("bcq,bkcs->bkqs", q, s)                          # B×K×hw(query)×hw(support)
    sim = sim.masked_fill(~inside[:, :, None, :], -2.0)
    best = sim.max(dim=-1).values                                       # B×K×hw
    prototype = (s * m[:, :, None, :]).sum(-1) / m.sum(-1, keepdim=True).clamp_min(_EPS)  # B×K×C
    proto_sim = torch.einsum("bcq,bkc->bkq", q, F.normalize(prototype, dim=2))
    maps = torch.stack([best, proto_sim], dim=2).view(b, k, 2, h, w)
    empty = (m.sum(-1) <= 0)[:, :, None, None, None]                    # shot with no mask at all
    maps = minmax(maps).masked_fill(empty, 0.0)
    wts = weights.clamp_min(0) * (~empty[:, :, 0, 0, 0]).float()
    wts = torch.where(wts.sum(1, keepdim=True) > 0, wts, torch.ones_like(wts))
    wts = wts / wts.sum(1, keepdim=True)
    return (maps * wts[:, :, None, None, None]).sum(1)
