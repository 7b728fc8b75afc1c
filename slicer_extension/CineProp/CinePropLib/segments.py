"""Segments (name, colour) ⇄ label values, and label arrays ⇄ per-segment masks. Pure numpy.

A Slicer segmentation holds named, coloured segments; the server works with one label array
(0 background, 1..255 structures) plus a ``{name: value}`` table. The rules:

* Sending: a segment whose name matches a label the server knows (case-insensitive) gets that
  value; the others get the smallest free values, in segment order. Where segments overlap, the
  later segment wins (the order of the Segment Editor list, as in Slicer's own labelmap export).
* Receiving: one segment per label value present. Its name and colour come from the segment that
  was sent with that value, else from the server's label names, else ``label N``; colours from a
  fixed palette (``PALETTE``) when nothing else says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from CinePropLib.conversions import ConversionError, as_labels

#: Default colours (RGB in 0..1) for label values 1, 2, ... (cycled). Distinct on grey MRI/ultrasound.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.30, 0.24),  # red
    (0.27, 0.67, 0.35),  # green
    (0.26, 0.52, 0.96),  # blue
    (0.95, 0.77, 0.06),  # yellow
    (0.61, 0.35, 0.71),  # purple
    (0.10, 0.74, 0.80),  # cyan
    (0.95, 0.55, 0.20),  # orange
    (0.85, 0.45, 0.65),  # pink
)


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: display name, colour (RGB 0..1) and the label value it has on the server."""

    name: str
    color: tuple[float, float, float]
    value: int


def palette_color(value: int) -> tuple[float, float, float]:
    """The default colour of label ``value`` (≥ 1)."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def assign_values(names: Sequence[str], known: Mapping[str, int] | None = None) -> dict[str, int]:
    """Label values for segment ``names`` (in Segment Editor order).

    Args:
        names: segment names; must be unique and non-empty.
        known: the server's ``{label name: value}`` table (``/info`` ``labels`` or an earlier result).

    Raises:
        ConversionError: duplicate names, or more than 255 segments.
    """
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if list(names).count(n) > 1})
        raise ConversionError(f"segment names must be unique; rename {', '.join(dupes)}")
    table = {str(k).lower(): int(v) for k, v in (known or {}).items() if 1 <= int(v) <= 255}
    values: dict[str, int] = {}
    for name in names:
        value = table.get(name.lower())
        if value is not None and value not in values.values():
            values[name] = value
    free = (v for v in range(1, 256) if v not in values.values())
    for name in names:
        if name not in values:
            try:
                values[name] = next(free)
            except StopIteration:
                raise ConversionError("more than 255 segments; a label array holds at most 255") from None
    return {name: values[name] for name in names}


def compose_labels(masks: Iterable[tuple[int, np.ndarray]], shape: Sequence[int]) -> np.ndarray:
    """Paint ``(value, mask)`` pairs, in order, into one uint8 array of ``shape`` (later wins)."""
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    for value, mask in masks:
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise ConversionError(f"segment mask shape {mask.shape} differs from {tuple(shape)}")
        if not 1 <= int(value) <= 255:
            raise ConversionError(f"label value {value} is outside 1..255")
        labels[mask != 0] = int(value)
    return labels


def split_labels(labels: np.ndarray) -> dict[int, np.ndarray]:
    """``{value: boolean mask}`` for every non-zero value present, in increasing value order."""
    labels = as_labels(labels)
    return {int(v): labels == v for v in np.unique(labels) if v != 0}


def result_segments(values: Iterable[int], label_names: Mapping[str, int] | None = None,
                    sent: Sequence[SegmentSpec] = ()) -> list[SegmentSpec]:
    """Segments to show for the label ``values`` of a result (see the module docstring for the rules)."""
    by_value = {s.value: s for s in sent}
    server = {int(v): str(k) for k, v in (label_names or {}).items()}
    out = []
    for value in sorted({int(v) for v in values if int(v) != 0}):
        if value in by_value:
            out.append(SegmentSpec(by_value[value].name, by_value[value].color, value))
        else:
            out.append(SegmentSpec(server.get(value, f"label {value}"), palette_color(value), value))
    return out


def label_info(segments: Sequence[SegmentSpec]) -> list[dict]:
    """MONAI Label's ``label_info`` list (``[{"name", "idx", "color"}]``), stored with a submitted label."""
    return [{"name": s.name, "idx": s.value, "color": [round(c, 4) for c in s.color]} for s in segments]


def remap_for_import(labels: np.ndarray, segments: Sequence[SegmentSpec]) -> np.ndarray:
    """Relabel so ``segments[n]`` has value ``n + 1`` (how Slicer maps a labelmap onto a list of segment IDs).

    Values that belong to no segment become 0.
    """
    labels = as_labels(labels)
    out = np.zeros_like(labels)
    for n, spec in enumerate(segments, 1):
        out[labels == spec.value] = n
    return out


def compose_frame_labels(frames: Sequence[Sequence[tuple[str, np.ndarray]]], frame_shape: Sequence[int],
                         known: Mapping[str, int] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Per-frame segment masks (a segmentation sequence: each frame has its own segment list) → labels.

    Args:
        frames: for each frame ``t``, ``(segment name, mask)`` pairs; masks are ``1×J×I`` (Slicer order).
        frame_shape: ``1×J×I``, the shape of every mask and of an empty frame.
        known: the server's ``{label name: value}``; a name keeps one value on every frame.

    Returns:
        ``(I×J×T`` uint8 labels, ``{name: value}`` in first-seen order).
    """
    names = list(dict.fromkeys(name for frame in frames for name, _ in frame))
    values = assign_values(names, known)
    planes = [compose_labels([(values[n], m) for n, m in frame], frame_shape) for frame in frames]
    if not planes:
        raise ConversionError("the segmentation sequence has no frames")
    return as_labels(np.stack([p[0].T for p in planes], axis=-1)), values


def missing_segments(template: Mapping[str, tuple], present: Mapping[str, tuple]) -> dict[str, tuple]:
    """The ``{name: colour}`` of ``template`` absent from ``present`` (names compared as Slicer does, exactly)."""
    return {name: color for name, color in template.items() if name not in present}
