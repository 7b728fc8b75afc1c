"""cineprop's Dice, IoU and HD95 against ``monai.metrics`` on the real ACDC masks bundled in data/sample.

Each label of frame ``t`` is scored against the same label in frame 0 of its cine, which gives real
contours that differ by heart motion. Spacings are 1 mm (the files) and 1 × 2.5 mm, so a mix-up of
the axes would show.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import monai.metrics as monai_metrics
import numpy as np
import pytest
from scipy import ndimage

from cineprop.io import load_labelled_cine
from cineprop.metrics import _surface, dice, hausdorff95, iou

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
SPACINGS = [(1.0, 1.0), (1.0, 2.5)]


def slice_pairs():
    """``(pred, gt)`` H×W bool masks: labels 1–3 of a few frames of each sample cine against frame 0."""
    for image in sorted(SAMPLE.glob("patient*_frame01.nii.gz")):
        _, cines = load_labelled_cine(image, image.with_name(image.name.replace(".nii.gz", "_label.nii.gz")))
        for _, truth in cines[:1]:
            frames = truth.shape[2]
            for label in (1, 2, 3):
                for t in sorted({1, frames // 2, frames - 1}):
                    yield truth[:, :, t] == label, truth[:, :, 0] == label


PAIRS = list(slice_pairs())


def one_hot(mask: np.ndarray):
    import torch

    return torch.from_numpy(np.stack([~mask, mask])[None])          # 1×2×H×W, background first


def directed(source: np.ndarray, target: np.ndarray, spacing) -> np.ndarray:
    """Distances in mm from each pixel of ``source`` to the nearest pixel of ``target``."""
    return ndimage.distance_transform_edt(~target, sampling=spacing)[source]


def test_the_sample_gives_enough_real_slices():
    assert len(PAIRS) >= 20 and sum(p.any() and g.any() for p, g in PAIRS) >= 15


def test_dice_and_iou_equal_monai():
    for pred, gt in PAIRS:
        if not pred.any() and not gt.any():
            continue
        kw = {"include_background": False, "ignore_empty": False}
        assert dice(pred, gt) == pytest.approx(monai_metrics.compute_dice(one_hot(pred), one_hot(gt), **kw).item(),
                                               abs=1e-6)
        assert iou(pred, gt) == pytest.approx(monai_metrics.compute_iou(one_hot(pred), one_hot(gt), **kw).item(),
                                              abs=1e-6)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_hd95_distances_are_monai_surface_distances(spacing):
    """With cineprop's surfaces, MONAI's surface distances pooled at the 95th percentile give the same number."""
    from monai.metrics.utils import get_surface_distance

    for pred, gt in PAIRS:
        if pred.any() and gt.any():
            sp, sg = _surface(pred), _surface(gt)
            pooled = np.concatenate([get_surface_distance(sp, sg, spacing=spacing),
                                     get_surface_distance(sg, sp, spacing=spacing)])
            assert hausdorff95(pred, gt, spacing) == pytest.approx(float(np.percentile(pooled, 95)), abs=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_monai_hd95_differs_exactly_as_documented(spacing):
    """MONAI's HD95 takes 4-neighbour surfaces and the larger of the two directed 95th percentiles."""
    gaps = []
    for pred, gt in PAIRS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                          # MONAI warns about empty masks
            theirs = monai_metrics.compute_hausdorff_distance(one_hot(pred), one_hot(gt), include_background=False,
                                                              percentile=95, spacing=spacing).item()
        ours = hausdorff95(pred, gt, spacing)
        if not pred.any() or not gt.any():
            assert math.isnan(ours) and math.isnan(theirs)
            continue
        sp, sg = (m & ~ndimage.binary_erosion(m) for m in (pred, gt))     # scipy's default cross = 4 neighbours
        by_hand = max(np.percentile(directed(sp, sg, spacing), 95), np.percentile(directed(sg, sp, spacing), 95))
        assert theirs == pytest.approx(by_hand, abs=1e-4)
        gaps.append(theirs - ours)
    assert max(gaps) > 0.3 * min(spacing)                            # the definitions really differ
