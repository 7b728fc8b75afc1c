"""The smooth-motion benchmark generator: the painted pose at frame 0, exact moved labels, periodic size change."""

from __future__ import annotations

import numpy as np

from cineprop.smooth_motion import SmoothMotion, animate
from cineprop.synthetic import moving_shapes


def test_animate_moves_image_and_labels_together():
    frames, labels = moving_shapes(64, 72, 1, labels=2, seed=3)
    still, label = np.clip(frames[:, :, 0], 0, 1), labels[:, :, 0]
    motion = SmoothMotion(frames=40, period=(20.0, 20.0), scale=(0.15, 0.15), noise=(0.0, 0.0), dropout=0.0)
    cine, moved, dropout = animate(still, label, np.random.default_rng(0), motion)
    assert cine.shape == moved.shape == (64, 72, 40) and moved.dtype == np.uint8 and dropout == []
    np.testing.assert_allclose(cine[:, :, 0], still, atol=1e-5)         # frame 0 is the painted pose
    np.testing.assert_array_equal(moved[:, :, 0], label)
    assert set(np.unique(moved)) == set(np.unique(label))
    area = (moved > 0).sum(axis=(0, 1)).astype(float)
    assert area[10] < 0.85 * area[0]                                  # peak contraction at half a period
    assert abs(area[20] - area[0]) < abs(area[10] - area[0])            # and back after one period
    # the image moved with the labels: the mean intensity inside the label stays that of the still
    inside = [cine[:, :, i][moved[:, :, i] == 1].mean() for i in (0, 10, 25)]
    assert np.ptp(inside) < 0.05


def test_dropout_frames_lose_the_signal():
    frames, labels = moving_shapes(48, 48, 1, labels=1, seed=1)
    motion = SmoothMotion(frames=30, dropout=0.3)
    cine, moved, dropout = animate(np.clip(frames[:, :, 0], 0, 1), labels[:, :, 0], np.random.default_rng(2), motion)
    assert dropout and 0 not in dropout
    clean = [i for i in range(30) if i not in dropout]
    contrast = lambda i: abs(cine[:, :, i][moved[:, :, i] == 1].mean() - cine[:, :, i][moved[:, :, i] == 0].mean())  # noqa: E731
    assert max(contrast(i) for i in dropout) < min(contrast(i) for i in clean)
