"""Configuration of the few-shot segmenter (a frozen dataclass saved inside every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, TypeVar

C = TypeVar("C", bound="SavedConfig")


class SavedConfig:
    """What a configuration dataclass saved in checkpoints shares: ``to_dict`` and ``from_dict``
    (JSON-like data back to the dataclass: unknown names ignored, lists back to tuples)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelConfig(SavedConfig):
    """Architecture hyper-parameters.

    Attributes:
        resolution: side of the square frames the network sees (a crop around the support is
            resized to it). 128 keeps 2-core CPU inference above 20 frames/s.
        backbone: ``"light"`` (ours, trained from scratch, ~1 M parameters) or ``"resnet18"``
            (torchvision layout, so a local ImageNet ``resnet18`` state dict can initialise it).
        widths: channels of the backbone levels at strides 2, 4, 8, 16 (``light`` only).
        blocks: residual blocks per level (``light`` only).
        decoder: channels of the fusion/decoder at strides 8, 4, 2.
        tau_window: frames on each side the Temporal Attention Unit attends to (video phase).
    """

    resolution: int = 128
    backbone: str = "light"
    widths: tuple[int, int, int, int] = (24, 48, 96, 160)
    blocks: tuple[int, int, int, int] = (1, 2, 2, 2)
    decoder: tuple[int, int, int] = (64, 48, 32)
    tau_window: int = 2
    extra: dict = field(default_factory=dict)
