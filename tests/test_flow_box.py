"""Boxed optical flow (``box`` / ``flow_box``): the box rule, the field inside and outside it, and a
session that rebuilds its field when a new paint moves the box, still equal to a fresh session."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, shift
from servers import tiny_checkpoint

from cineprop.flow import BOX_GRID, FlowField, flow_box
from cineprop.io import Cine
from cineprop.methods import build_propagator
from cineprop.repropagate import Repropagator
from cineprop.support import SupportSet
from cineprop.synthetic import moving_shapes


def test_flow_box_grows_snaps_and_clips():
    mask = np.zeros((128, 160), bool)
    mask[40:50, 60:70] = True                     # grown by 24 px, snapped outward to the 32-px grid
    assert flow_box([mask], mask.shape) == (0, 96, 32, 96)
    corner = np.zeros((128, 160), bool)
    corner[120:, 150:] = True                     # clipped to the frame
    assert flow_box([mask, corner], mask.shape) == (0, 128, 0, 160)
    assert flow_box([np.zeros((8, 8), bool)], (8, 8)) is None
    assert all(v % BOX_GRID == 0 for v in flow_box([mask], mask.shape))


def test_boxed_field_is_the_flow_inside_and_zero_outside():
    """Frame 1 is frame 0 moved by (dy, dx) = (+3, −2): inside the box ``step(1, 0)`` ≈ (2, −3), outside 0."""
    first = gaussian_filter(np.random.default_rng(0).random((96, 128)), 2.5).astype(np.float32)
    frames = np.stack([first, shift(first, (3.0, -2.0), order=1, mode="nearest")], axis=-1)
    box = (16, 80, 32, 96)
    flow = FlowField(frames, "dis", box).step(1, 0)
    np.testing.assert_allclose(np.median(flow[32:64, 48:80].reshape(-1, 2), axis=0), [2.0, -3.0], atol=0.6)
    outside = np.ones(flow.shape[:2], bool)
    outside[16:80, 32:96] = False
    assert not flow[outside].any()


def test_a_boxed_session_equals_a_fresh_one_through_corrections(tmp_path):
    model = build_propagator("model", checkpoint=str(tiny_checkpoint(tmp_path / "tiny.pt")),
                             flow_method="dis_fine", flow_box=True)
    frames, truth = moving_shapes(192, 224, 12, labels=1, seed=4, speed=0.0)  # still shapes
    truth[170:178, 200:208, 6] = 1                # a far paint on frame 6 moves the box (and the network's ROI)
    cine = Cine(frames, name="still")
    live = Repropagator(model, cine)
    boxes = []
    for painted in ([0], [0, 6]):
        support = SupportSet.from_labels(truth, painted)
        boxes.append(flow_box(support.all_masks(), truth.shape[:2]))
        again, fresh = live.propagate(support), model.propagate(cine, support)
        assert np.mean(again.labels != fresh.labels) <= 1e-4
        np.testing.assert_allclose(again.probabilities[1], fresh.probabilities[1], atol=1e-4)
    assert boxes == [(32, 160, 96, 224), (0, 192, 64, 224)]     # a box smaller than the frame, moved once
