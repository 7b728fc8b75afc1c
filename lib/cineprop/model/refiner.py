"""The carrier refiner: a small U-Net that corrects a carried mask (registration-guided refinement).

A carrier (DIS flow, demons, ...) moves the painted mask onto a query frame; where the anatomy
changed rather than moved (a slice where the ventricle shrinks, a lesion leaving the plane) the
moved mask is wrong however good the registration. The refiner sees, on a square crop around the
carried mask (:mod:`cineprop.refine` makes it), three channels:

* the query frame,
* the painted frame moved onto the query by the carrier's displacement (where it differs from
  the query, the displacement did not explain the frame),
* the carried probability,

and outputs a residual on the carried mask's logit. Its last layer starts at zero, so an untrained
refiner returns the carried mask unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cineprop.model.config import SavedConfig

#: input channels: query frame, moved painted frame, carried probability
CHANNELS = 3
#: the carried probability is clipped to [EPS, 1 − EPS] before its logit
EPS = 0.02


@dataclass(frozen=True)
class RefinerConfig(SavedConfig):
    """Architecture of :class:`CarrierRefiner` (saved in its checkpoint).

    Attributes:
        resolution: side of the square crop the refiner sees.
        widths: channels at strides 1, 2, 4, 8.
    """

    resolution: int = 64
    widths: tuple[int, int, int, int] = (16, 32, 48, 64)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class CarrierRefiner(nn.Module):
    """``forward(x)``: ``B×3×R×R`` (query, moved painted frame, carried probability) → ``B×1×R×R``
    refined logit = logit(carried) + a learned residual."""

    def __init__(self, config: RefinerConfig = RefinerConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.down = nn.ModuleList([_block(CHANNELS, w[0])] + [_block(w[i], w[i + 1]) for i in range(3)])
        self.up = nn.ModuleList([_block(w[i + 1] + w[i], w[i]) for i in range(3)])
        self.out = nn.Conv2d(w[0], 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x[:, 2:3].clamp(EPS, 1 - EPS)) + self.residual(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``B×1×R×R``: what the refiner adds to the carried mask's logit (0 untrained)."""
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in (2, 1, 0):
            h = F.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([h, skips[i]], dim=1))
        return self.out(h)
