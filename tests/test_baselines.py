"""Copy and flow baselines on a synthetic moving-shape cine (flow must beat copy)."""

from __future__ import annotations

import numpy as np
import pytest

from cineprop.errors import CinepropError
from cineprop.io import Cine
from cineprop.methods import available, build_propagator
from cineprop.metrics import score_label
from cineprop.support import query_frames, select_support
from cineprop.synthetic import moving_shapes


def mean_dice(result, labels, support):
    return np.mean([score_label(result.labels == k, labels == k, query_frames(support, k))["dice"]
                    for k in support.labels])


@pytest.mark.parametrize("strategy", ["first", "middle"])
def test_flow_beats_copy_on_moving_shapes(strategy):
    frames, labels = moving_shapes(64, 64, 14, labels=2, seed=1, speed=1.5)
    cine = Cine(frames, name="moving")
    support = select_support(labels, strategy)
    copy = build_propagator("copy").propagate(cine, support)
    flow = build_propagator("flow").propagate(cine, support)
    d_copy, d_flow = mean_dice(copy, labels, support), mean_dice(flow, labels, support)
    assert d_flow > d_copy + 0.05, (d_copy, d_flow)
    for result in (copy, flow):
        assert result.labels.shape == labels.shape and result.labels.dtype == np.uint8
        assert result.confidence.shape == (14,)
        for label in support.labels:
            for f in support.frames_of(label):          # painted frames come back exactly
                np.testing.assert_array_equal(result.labels[:, :, f] == label, labels[:, :, f] == label)
        assert all(result.confidence[f] == 1.0 for f in support.frames)


def test_copy_repeats_nearest_support():
    frames, labels = moving_shapes(32, 32, 8, labels=1, seed=0)
    support = select_support(labels, "first", shots=2)   # frames 0 and 7
    result = build_propagator("copy").propagate(Cine(frames), support)
    np.testing.assert_array_equal(result.labels[:, :, 2], labels[:, :, 0])
    np.testing.assert_array_equal(result.labels[:, :, 5], labels[:, :, 7])
    assert result.confidence[3] < result.confidence[1]


def test_flow_bidirectional_between_supports_is_better_than_one_side():
    frames, labels = moving_shapes(64, 64, 16, labels=1, seed=4, speed=2.0)
    cine = Cine(frames)
    one = select_support(labels, "first", shots=1)
    two = select_support(labels, "first", shots=2)
    flow = build_propagator("flow")
    # score the frames that are queries in both settings
    frames_scored = [t for t in range(1, 15)]
    d1 = score_label(flow.propagate(cine, one).labels == 1, labels == 1, frames_scored)["dice"]
    d2 = score_label(flow.propagate(cine, two).labels == 1, labels == 1, frames_scored)["dice"]
    assert d2 > d1


def test_builder_errors():
    assert {"copy", "flow"} <= set(available())
    with pytest.raises(CinepropError, match="unknown method 'magic'"):
        build_propagator("magic")
    with pytest.raises(CinepropError, match="does not take option"):
        build_propagator("flow", checkpoint="x.pt")
    build_propagator("flow", checkpoint=None)  # None options are ignored
