"""Labelled data for episodic training, held in memory.

* :class:`CineSet`: labelled cines (ACDC ``sequences``), each label a binary few-shot task.
* :class:`ImageSet`: labelled 2D images (HC18, BUSI, CHASE_DB1: ``images/NAME.png`` +
  ``masks/NAME.png``, 255 inside), split deterministically into train/validation by name.

Intensities are normalised with :func:`cineprop.transforms.normalise_intensity`, exactly as at
inference (whole cine / whole image).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from cineprop.errors import InputError, where
from cineprop.io.volume import read_image, read_label
from cineprop.transforms import normalise_intensity

IMAGE_SETS = ("hc18", "busi", "chasedb1")


@dataclass
class CineSet:
    """Labelled cines: ``frames[i]`` ``H×W×T`` float32 in [0, 1], ``labels[i]`` ``H×W×T`` uint8."""

    name: str
    ids: list[str]
    frames: list[np.ndarray]
    labels: list[np.ndarray]
    label_values: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ImageSet:
    """Labelled 2D images: ``images[i]`` ``H×W`` float32 in [0, 1], ``masks[i]`` ``H×W`` bool."""

    name: str
    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def read_split(split_file: str | Path, split: str) -> list[str]:
    with open(split_file, newline="") as fh:
        ids = [row["sequence"] for row in csv.DictReader(fh) if row["split"] == split]
    if not ids:
        raise InputError(where(split_file, f"no sequences in split {split!r}"))
    return ids


def load_cine_set(folder: str | Path, ids: Sequence[str], name: str = "acdc",
                  exclude_labels: Sequence[int] = (), progress: bool = True) -> CineSet:
    """Load ``ID.nii.gz`` + ``ID_label.nii.gz`` for ``ids``; labels in ``exclude_labels`` become background."""
    folder = Path(folder)
    frames, labels = [], []
    for case in tqdm(ids, desc=f"load {name}", disable=not progress, leave=False):
        image = read_image(folder / f"{case}.nii.gz")
        label = read_label(folder / f"{case}_label.nii.gz", like=image).array.copy()
        for value in exclude_labels:
            label[label == value] = 0
        frames.append(normalise_intensity(image.array))
        labels.append(label)
    values = tuple(sorted({int(v) for lab in labels for v in np.unique(lab) if v}))
    return CineSet(name, list(ids), frames, labels, values)


def _holdout(name: str, fraction: float) -> bool:
    """Deterministic, order-independent split: a stable hash of the file name."""
    digest = hashlib.sha1(name.encode()).digest()
    return digest[0] / 256.0 < fraction


def load_image_set(folder: str | Path, split: str = "train", holdout: float = 0.1,
                   max_side: int = 320) -> ImageSet:
    """Load an image set (``images/`` + ``masks/``), ``split`` ``"train"`` or ``"val"`` (hash holdout)."""
    folder = Path(folder)
    names = sorted(p.name for p in (folder / "images").glob("*.png"))
    if not names:
        raise InputError(where(folder, "no images/*.png"))
    chosen = [n for n in names if _holdout(n, holdout) == (split == "val")]
    images, masks = [], []
    for n in chosen:
        image = cv2.imread(str(folder / "images" / n), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(folder / "masks" / n), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None or image.shape != mask.shape:
            raise InputError(where(folder / "images" / n, "unreadable image or mask of a different size"))
        scale = max_side / max(image.shape)
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        images.append(normalise_intensity(image.astype(np.float32)))
        masks.append(mask > 127)
    return ImageSet(folder.name, chosen, images, masks)
