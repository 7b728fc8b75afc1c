"""Propagate the frames painted in a label file through an image file: the one path of every front end.

``cineprop predict``, ``cineprop batch`` (:mod:`cineprop.batch.work`), the MONAI Label app
(``monailabel_app/lib/service.py``) and collection relearning (:mod:`cineprop.relearn.sources`)
all go the same way; they keep only their own reporting::

    read the cine(s) → read the painted label like it → per slice position: the paint on the chosen
    frames, ignored label values removed → skip positions without paint → support set → propagate → assemble

Array layout: an image file is ``H×W×T`` (one cine) or ``H×W×Z×T`` (one cine per slice position
``z``); the painted label volume and the result have the image's shape.

**The empty-support rule**, written once here (:func:`painted_cines`): a slice position with no
paint on the chosen frames is not propagated and stays 0 in the result, whether the file holds
one cine or many; a file where no slice position has paint is a :class:`~cineprop.errors.SupportError`
(``"LABEL_FILE: no support: empty support, ..."``). Relearning, which learns from whatever is
painted, skips such a file instead of failing (``required=False``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from cineprop.errors import SupportError, where
from cineprop.io import Cine, Volume, assemble_labels, labels_for, load_cines, read_label
from cineprop.propagation import Propagation
from cineprop.support import SupportSet

#: How one cine is propagated from its support: ``propagator.propagate``, or a front end's live session.
PropagateCine = Callable[[Cine, SupportSet], Propagation]


@dataclass
class CineResult:
    """One propagated cine: the cine, the support it started from and the propagation."""

    cine: Cine
    support: SupportSet
    propagation: Propagation

    def query_frames(self) -> list[int]:
        """The frames that were predicted (not painted), ascending."""
        support = set(self.propagation.support_frames)
        return [t for t in range(self.cine.num_frames) if t not in support]


@dataclass
class VolumeResult:
    """Propagation of one image file.

    Attributes:
        volume: the image (its geometry is written back with the result).
        cines: the propagated cines (one for 3D; the painted slice positions for 4D), in file order.
        labels: the result, uint8 with the image's shape; unpainted slice positions are 0.
    """

    volume: Volume
    cines: list[CineResult]
    labels: np.ndarray

    def support_only(self) -> np.ndarray:
        """The support actually used as a label volume of the image's shape (support frames only)."""
        out = np.zeros(self.volume.shape, dtype=np.uint8)
        for r in self.cines:
            view = labels_for(out, r.cine)  # a view into ``out`` (the cine's slice position)
            for frame in r.support.frames:
                view[:, :, frame] = r.support.label_array(frame)
        return out

    def query_confidence(self) -> list[float]:
        """Confidence of every query (not painted) frame of every propagated cine, cine by cine."""
        return [float(r.propagation.confidence[t]) for r in self.cines for t in r.query_frames()]

    @property
    def seconds(self) -> float:
        """Propagation time summed over the cines (reading and writing not included)."""
        return float(sum(r.propagation.seconds for r in self.cines))


def load_painted(image: str | os.PathLike, painted: str | os.PathLike,
                 slice_index: int | None = None) -> tuple[Volume, list[Cine], Volume]:
    """Read an image file (any input :func:`~cineprop.io.load_cines` reads) and the label file painted on it.

    Returns:
        the image volume, its cines (only ``slice_index`` of a 4D file when given) and the painted
        label volume (uint8, the image's shape).

    Raises:
        InputError: unreadable files, label shape ≠ image shape.
    """
    volume, cines = load_cines(image, slice_index)
    return volume, cines, read_label(painted, like=volume)


def painted_cines(cines: Sequence[Cine], painted: Volume, frames: Iterable[int] | None = None,
                  ignored_labels: Iterable[int] = (), required: bool = True) -> list[tuple[Cine, np.ndarray]]:
    """The cines with paint on the chosen frames, each with that paint (the empty-support rule).

    Args:
        cines: the image's cines (:func:`load_painted`).
        painted: the painted label volume, the image's shape.
        frames: use only these frames' paint (default: every painted frame).
        ignored_labels: label values treated as unpainted (e.g. Slicer's background scribbles).
        required: raise when no cine has paint (else return an empty list).

    Returns:
        ``(cine, labels)`` for each cine with paint, in file order; ``labels`` is ``H×W×T`` uint8,
        0 outside the chosen frames and on ignored values.

    Raises:
        SupportError: a chosen frame outside the cine; nothing painted (when ``required``).
    """
    chosen = None if frames is None else sorted({int(f) for f in frames})
    ignored = sorted({int(v) for v in ignored_labels})
    out = []
    for cine in cines:
        labels = labels_for(painted, cine)
        if chosen is not None:
            bad = [f for f in chosen if not 0 <= f < cine.num_frames]
            if bad:
                raise SupportError(where(painted.path, f"support frames {bad} are outside 0..{cine.num_frames - 1}"))
            keep = np.zeros(cine.num_frames, bool)
            keep[chosen] = True
            labels = np.where(keep, labels, 0).astype(np.uint8)      # keep broadcasts over H×W×T's last axis
        if ignored:
            labels = np.where(np.isin(labels, ignored), 0, labels).astype(np.uint8)
        if labels.any():
            out.append((cine, labels))
    if required and not out:
        on = f" on frames {chosen}" if chosen is not None else ""
        places = "any slice position" if len(cines) > 1 else "any frame"
        raise SupportError(where(painted.path, f"no support: empty support, nothing is painted on {places}{on}"))
    return out


def support_from_labels(labels: np.ndarray, painted: Volume) -> SupportSet:
    """:meth:`SupportSet.from_labels` of one cine's paint; its errors name the label file."""
    try:
        return SupportSet.from_labels(labels)
    except SupportError as exc:
        raise SupportError(where(painted.path, str(exc))) from None


def propagate_volume(volume: Volume, cines: Sequence[Cine], painted: Volume, propagate: PropagateCine,
                     frames: Iterable[int] | None = None, ignored_labels: Iterable[int] = ()) -> VolumeResult:
    """Propagate every painted slice position of an image file (the module docstring's path).

    Args:
        volume, cines, painted: from :func:`load_painted` (``painted``: uint8, the image's shape).
        propagate: ``propagator.propagate``, or a front end's way to reuse a live session per cine
            (:class:`~cineprop.repropagate.Repropagator`, the app's session cache).
        frames, ignored_labels: as in :func:`painted_cines`.

    Returns:
        the per-cine results and the assembled label volume.

    Raises:
        SupportError: nothing painted (on the chosen frames), a frame outside the cine, a frame
            painted everywhere.
    """
    results = []
    for cine, labels in painted_cines(cines, painted, frames, ignored_labels):
        support = support_from_labels(labels, painted)
        results.append(CineResult(cine, support, propagate(cine, support)))
    labels = assemble_labels(volume, [(r.cine, r.propagation.labels) for r in results])
    return VolumeResult(volume, results, labels)
