"""Backbones ``F``: image → features at strides 2, 4, 8 and 16.

``G`` (the first half, high resolution) is the stride-2 and stride-4 output; the stride-8 and
stride-16 outputs form the high-level embedding the pseudo mask is computed from.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convolutions with batch norm, identity or 1×1 shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def _level(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), *[BasicBlock(cout, cout) for _ in range(blocks - 1)])


class LightBackbone(nn.Module):
    """A small ResNet for grey frames, fast on CPU (~0.25 GMAC at 128²).

    Input ``N×1×R×R``; output list ``[N×w0×R/2, N×w1×R/4, N×w2×R/8, N×w3×R/16]``.
    """

    def __init__(self, widths: Sequence[int] = (24, 48, 96, 160), blocks: Sequence[int] = (1, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        chans = [16, *widths]
        self.levels = nn.ModuleList(_level(chans[i], chans[i + 1], blocks[i], 2) for i in range(4))
        self.channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out


class ResNet18Backbone(nn.Module):
    """torchvision's ResNet-18 layout (same parameter names), adapted to grey frames.

    Strides: conv1 → 2, layer1 (after max-pool) → 4, layer2 → 8, layer3 → 16; layer4 is not used.
    :meth:`load_imagenet` takes a local torchvision ``resnet18`` state dict (no download): the RGB
    filters of ``conv1`` are summed into one grey channel.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _level(64, 64, 2, 1)
        self.layer2 = _level(64, 128, 2, 2)
        self.layer3 = _level(128, 256, 2, 2)
        self.channels = (64, 64, 128, 256)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        return [s2, s4, s8, self.layer3(s8)]

    def load_imagenet(self, state: dict) -> list[str]:
        """Load a torchvision resnet18 state dict; returns the names that were not used."""
        state = dict(state)
        if "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
            state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
        own = self.state_dict()
        used = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        own.update(used)
        self.load_state_dict(own)
        return sorted(set(state) - set(used))


def build_backbone(name: str, widths: Sequence[int], blocks: Sequence[int]) -> nn.Module:
    if name == "light":
        return LightBackbone(widths, blocks)
    if name == "resnet18":
        return ResNet18Backbone()
    raise ValueError(f"unknown backbone {name!r} (light, resnet18)")
