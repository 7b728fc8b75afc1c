"""The cines a collection relearning run learns from: image files and the label files painted on them.

The support of each cine is what was painted on it: the non-empty frames of ``ID_label.*`` beside
the image (``support_from="labels"``) or of ``DIR/ID_label.*`` / ``DIR/ID.*`` in a support folder,
or an explicit ``(image, painted label)`` pair (:func:`sources_from_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from cineprop.errors import InputError, where
from cineprop.evaluate import IMAGE_SUFFIXES, LABEL_SUFFIX
from cineprop.io.cine import Cine, stem
from cineprop.support import SupportSet, select_support
from cineprop.volume_propagation import load_painted, painted_cines, support_from_labels


@dataclass(frozen=True)
class CineSource:
    """One image file and the label file holding its painted frames."""

    id: str
    image: Path
    painted: Path


def find_sources(data_dir: str | Path, support_from: str = "labels", split_file: str | Path | None = None,
                 split: str | None = None) -> list[CineSource]:
    """Images in ``data_dir`` with their painted label files (see the module docstring).

    ``split_file``/``split``: keep only the sequences of that split (a CSV ``sequence,split``).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(where(root, "data folder not found"))
    support_dir = root if support_from == "labels" else Path(support_from)
    if not support_dir.is_dir():
        raise InputError(where(support_dir, "support folder not found"))
    out = []
    for path in sorted(root.iterdir()):
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or path.name[: -len(suffix)].endswith(LABEL_SUFFIX):
            continue
        case = path.name[: -len(suffix)]
        names = [f"{case}{LABEL_SUFFIX}{s}" for s in IMAGE_SUFFIXES]
        if support_dir != root:
            names += [f"{case}{s}" for s in IMAGE_SUFFIXES]
        painted = next((support_dir / n for n in names if (support_dir / n).exists()), None)
        if painted is not None:
            out.append(CineSource(case, path, painted))
    if split_file is not None:
        from cineprop.training.data import read_split

        wanted = set(read_split(split_file, split))
        out = [source for source in out if source.id in wanted]
    if not out:
        raise InputError(where(support_dir, "no image with a painted label file found"))
    return out


def load_supports(source: CineSource, frames: str = "all", shots: int = 1) -> Iterator[tuple[Cine, SupportSet]]:
    """``(cine, support)`` for each cine of a source that has painted frames (a source with none yields nothing).

    ``frames="all"``: every painted frame is support; ``"first"``/``"middle"``: ``shots`` of them per
    label (:func:`~cineprop.support.select_support`).
    """
    _, cines, painted = load_painted(source.image, source.painted)
    for cine, labels in painted_cines(cines, painted, required=False):
        yield cine, (support_from_labels(labels, painted) if frames == "all" else select_support(labels, frames, shots))


def sources_from_pairs(pairs: Sequence[tuple[str | Path, str | Path]]) -> list[CineSource]:
    """:class:`CineSource` for explicit ``(image file, painted label file)`` pairs (ids: image stems)."""
    out = []
    for image, painted in pairs:
        image, painted = Path(image), Path(painted)
        for path in (image, painted):
            if not path.is_file():
                raise InputError(where(path, "file not found"))
        out.append(CineSource(stem(image), image, painted))
    if not out:
        raise InputError("no (image, painted label) pairs to relearn on")
    return out
