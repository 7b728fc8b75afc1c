"""Training augmentation: MONAI-equivalent geometry and a seed that fixes the whole episode stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cineprop.roi import Roi
from cineprop.synthetic import moving_shapes
from cineprop.training.augment import Geometry2D
from cineprop.training.data import CineSet, ImageSet
from cineprop.training.episodes import EpisodeMix, EpisodeSampler


@pytest.mark.parametrize("flip_y,flip_x,turns", list(itertools.product([False, True], [False, True], range(4))))
def test_geometry_equals_monai_flip_and_rotate90(flip_y, flip_x, turns):
    """After the ROI crop, the view is MONAI's Flip (axis 0, then 1) followed by Rotate90(k=turns)."""
    from monai.transforms import Flip, Rotate90

    image = np.random.default_rng(turns).random((50, 40)).astype(np.float32)
    roi = Roi(3.0, 2.0, 36.0)
    expected = Geometry2D(roi, 32).apply(image)[None]               # the crop alone; MONAI is channel-first
    for axis, flip in ((0, flip_y), (1, flip_x)):
        expected = Flip(spatial_axis=axis)(expected) if flip else expected
    expected = np.asarray(Rotate90(k=turns)(expected))[0]
    assert np.array_equal(Geometry2D(roi, 32, flip_y, flip_x, turns).apply(image), expected)


def _sampler(seed: int) -> EpisodeSampler:
    cines = [moving_shapes(48, 48, 8, labels=2, seed=10 + i, noise=0.05) for i in range(3)]
    data = CineSet("synthetic", ["a", "b", "c"], [f for f, _ in cines], [lab for _, lab in cines], (1, 2))
    frames = [(i, t) for i in range(2) for t in (0, 4)]                 # four labelled images: all kinds sample
    images = ImageSet("shapes", [f"{i}_{t}" for i, t in frames], [cines[i][0][:, :, t] for i, t in frames],
                      [cines[i][1][:, :, t] == 1 for i, t in frames])
    mix = EpisodeMix(cine_neighbour=0.4, cine_cross=0.2, image_pair=0.3, image_cross=0.1)
    return EpisodeSampler(data, [images], 32, mix, seed=seed)


def test_a_seed_fixes_every_augmented_batch():
    a, b, c = _sampler(3), _sampler(3), _sampler(4)
    for _ in range(3):
        ba, bb, bc = a.batch(6, 2), b.batch(6, 2), c.batch(6, 2)
        assert all(np.array_equal(ba[k].numpy(), bb[k].numpy()) for k in ba)
        assert not np.array_equal(ba["query"].numpy(), bc["query"].numpy())


def test_without_cines_only_image_episodes_are_drawn():
    """``train-image --no-acdc`` gives the sampler no cines: it must draw image episodes only, and batches."""
    full = _sampler(5)
    images_only = EpisodeSampler(None, list(full.images.values()), 32, full.mix, seed=5)
    assert images_only.kinds == ["image_pair", "image_cross"]
    batch = images_only.batch(4, 1)
    assert batch["query"].shape == (4, 1, 32, 32) and batch["target"].max() <= 1
    with pytest.raises(ValueError, match="no training data"):
        EpisodeSampler(None, [], 32, full.mix)
