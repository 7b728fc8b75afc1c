"""The presence check: has the painted structure left the query frame?

A structure can leave the frame: a ventricle past the apex or the base of a slice stack, an organ
leaving an ultrasound sweep. Registration cannot see it (it moves the mask wherever the tissue
went), so every carrier, and our network, keeps a mask there: on ACDC test every such query
label-frame scores Dice 0 for every method, 9.5 % of them with first-frame support
(docs/benchmarks.md, "Structures that leave the frame").

:class:`PresenceNet` sees the carrier refiner's input (:func:`cineprop.refine.refiner_input`: the
query frame, the painted frame moved onto it, the carried probability, on a square crop around the
carried mask) and returns the logit that the structure is *absent* from the query crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cineprop.model.config import SavedConfig
from cineprop.model.refiner import CHANNELS


@dataclass(frozen=True)
class PresenceConfig(SavedConfig):
    """Architecture of :class:`PresenceNet` (saved in its checkpoint).

    Attributes:
        resolution: side of the square crop it sees (the refiner's crop rule).
        widths: channels of the four conv blocks (each followed by a 2× max-pool).
    """

    resolution: int = 64
    widths: tuple[int, int, int, int] = (16, 32, 64, 64)


class PresenceNet(nn.Module):
    """``forward(x)``: ``B×3×R×R`` (query, moved painted frame, carried probability) → ``B`` logits
    that the structure is absent from the query crop (mean- and max-pooled features, one linear layer)."""

    def __init__(self, config: PresenceConfig = PresenceConfig()):
        super().__init__()
        self.config = config
        layers, cin = [], CHANNELS
        for width in config.widths:
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.GroupNorm(4, width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(2 * cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.out(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))[:, 0]
