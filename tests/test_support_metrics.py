"""Support selection and metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cineprop.errors import SupportError
from cineprop.metrics import (confidence_curve, dice, flagging_summary, hausdorff95, iou, score_label, summarise,
                              temporal_stability)
from cineprop.support import (SupportSet, labels_from_probabilities, neighbours, outward_runs, query_frames,
                              select_support, spread_frames)


def square(h, w, y, x, size):
    m = np.zeros((h, w), bool)
    m[y:y + size, x:x + size] = True
    return m


def test_dice_iou_by_hand():
    a = square(10, 10, 0, 0, 4)          # 16 px
    b = square(10, 10, 2, 0, 4)          # overlap rows 2-3: 8 px
    assert dice(a, b) == pytest.approx(2 * 8 / 32)
    assert iou(a, b) == pytest.approx(8 / 24)
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_dice_takes_tensors_and_arrays_alike():
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.random((2, 17, 19)) > 0.4
    assert dice(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(dice(a, b))
    assert dice(torch.zeros(3, 3), torch.zeros(3, 3)) == 1.0 and dice(torch.ones(2), torch.zeros(2)) == 0.0


def test_one_shot_weight_rule_for_every_path():
    from cineprop.relearn.two_stage import plan_item
    from cineprop.shots import TEMPORAL_SCALE, certainty, shot_weight

    assert shot_weight(0) == 1.0 and shot_weight(3) == pytest.approx(math.exp(-3 / TEMPORAL_SCALE))
    assert shot_weight(-30, floor=0.25) == 0.25                       # re-anchoring: the floor holds
    far = plan_item(0, [0], 20, 24, floor=0.25)                       # stage 2 weighs painted shots as stage 1
    assert far.supports == ((0, 0.25),) and far.memory == (19, pytest.approx(shot_weight(1)))
    assert certainty(np.zeros((4, 4))) == 1.0 and certainty(np.full((4, 4), 0.5)) == 0.0


def test_hausdorff95_uses_spacing():
    a = square(40, 40, 10, 10, 10)
    b = square(40, 40, 10, 13, 10)       # shifted 3 px along the second axis
    assert hausdorff95(a, b, (1.0, 1.0)) == pytest.approx(3.0)
    assert hausdorff95(a, b, (1.0, 2.0)) == pytest.approx(6.0)
    assert hausdorff95(a, a) == 0.0
    assert math.isnan(hausdorff95(a, np.zeros_like(a)))


def test_temporal_stability():
    assert temporal_stability([10, 12, 14], [10, 11, 12]) == pytest.approx(2.0)
    assert temporal_stability([10, 11, 12], [10, 11, 12]) == pytest.approx(1.0)
    assert math.isnan(temporal_stability([1, 2], [5, 5]))


def test_score_excludes_support_and_empty_frames():
    gt = np.zeros((10, 10, 4), bool)
    pred = np.zeros((10, 10, 4), bool)
    gt[:, :, 0] = pred[:, :, 0] = square(10, 10, 0, 0, 4)   # support frame: perfect but excluded
    gt[:, :, 1] = square(10, 10, 0, 0, 4)
    pred[:, :, 1] = square(10, 10, 2, 0, 4)                # Dice 0.5
    pred[:, :, 2] = square(10, 10, 0, 0, 2)                # false positive on an empty frame: Dice 0
    # frame 3 empty in both: not scored
    s = score_label(pred, gt, query=[1, 2, 3])
    assert s["frames"] == [1, 2]
    assert s["dice"] == pytest.approx(0.25)
    mean, per_label = summarise([{"labels": {"1": s}}, {"labels": {"1": dict(s, dice=0.75), "2": dict(s, dice=1.0)}}])
    assert mean == pytest.approx((0.25 + 0.75 + 1.0) / 3)
    assert per_label["1"]["dice"] == pytest.approx(0.5) and per_label["1"]["sequences"] == 2


def make_labels():
    labels = np.zeros((8, 8, 9), np.uint8)
    for t in range(1, 8):            # label 1 on frames 1..7
        labels[1:3, 1:3, t] = 1
    for t in range(3, 9):            # label 2 on frames 3..8
        labels[5:7, 5:7, t] = 2
    return labels


def test_select_support_first_middle_shots():
    labels = make_labels()
    first = select_support(labels, "first")
    assert first.frames_of(1) == [1] and first.frames_of(2) == [3]
    middle = select_support(labels, "middle")
    assert middle.frames_of(1) == [4] and middle.frames_of(2) == [6]
    three = select_support(labels, "first", shots=3)
    assert three.frames_of(1) == [1, 4, 7] and three.frames_of(2) == [3, 6, 8]
    mid3 = select_support(labels, "middle", shots=3)
    assert mid3.frames_of(1) == [1, 4, 7]
    assert query_frames(first, 1) == [0, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(SupportError, match="unknown support strategy"):
        select_support(labels, "last")


def test_spread_frames_edge_cases():
    assert spread_frames([2, 3], 0, 5) == [2, 3]
    assert spread_frames([0, 1, 2, 3, 4, 5], 3, 2) == [0, 3]
    assert spread_frames(list(range(10)), 5, 3) == [0, 5, 9]
    with pytest.raises(SupportError):
        spread_frames([1, 2], 0, 0)


def test_support_from_user_labels():
    labels = make_labels()
    painted = np.zeros_like(labels)
    painted[:, :, 4] = labels[:, :, 4]
    painted[:, :, 6] = labels[:, :, 6] * (labels[:, :, 6] == 2)
    support = SupportSet.from_labels(painted)
    assert support.frames == [4, 6]
    assert support.frames_of(1) == [4] and support.frames_of(2) == [4, 6]
    np.testing.assert_array_equal(support.label_array(4), labels[:, :, 4])
    only6 = SupportSet.from_labels(painted, frames=[6])
    assert only6.labels == [2]
    with pytest.raises(SupportError, match="no support"):
        SupportSet.from_labels(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SupportError, match="outside 0..8"):
        SupportSet.from_labels(painted, frames=[9])
    with pytest.raises(SupportError, match="H×W×T"):
        SupportSet.from_labels(np.zeros((4, 4), np.uint8))


def test_neighbours_and_combination():
    assert neighbours([2, 6], 4) == (2, 6)
    assert neighbours([2, 6], 0) == (None, 2)
    assert neighbours([2, 6], 6) == (6, 6)
    p1 = np.array([[[0.9]], [[0.2]], [[0.6]]], np.float32).reshape(3, 1, 1)
    p2 = np.array([[[0.1]], [[0.4]], [[0.7]]], np.float32).reshape(3, 1, 1)
    out = labels_from_probabilities({1: p1, 3: p2})
    assert out.ravel().tolist() == [1, 0, 3]


def test_outward_runs_reach_the_cines_end():
    """Only judged runs that start at frame 0 or end at the last frame, outside the painted span."""
    assert outward_runs([0, 1, 3, 8, 9], [2, 5], 10) == [0, 1, 8, 9]
    assert outward_runs([1, 2, 7, 9], [4], 10) == [9]                  # frame 0 and 8 judged present
    assert outward_runs([3, 4, 5, 6, 7], [2, 8], 9) == []              # between painted frames: never
    assert outward_runs(range(10), [0], 10) == list(range(1, 10))
    assert outward_runs([], [3], 6) == []


def test_combining_labels_equals_argmax_over_the_stack():
    """Highest probability wins, ties to the smaller label value, 0 below the threshold: the same as
    argmax over the sorted label stack, on random maps with many exact ties."""
    rng = np.random.default_rng(0)
    probs = {label: (rng.integers(0, 5, (16, 12, 6)) / 4).astype(np.float32) for label in (3, 1, 2)}
    stack = np.stack([probs[k] for k in (1, 2, 3)])
    expected = np.array([1, 2, 3], np.uint8)[stack.argmax(axis=0)]
    expected[stack.max(axis=0) < 0.5] = 0
    np.testing.assert_array_equal(labels_from_probabilities(probs), expected)
    assert labels_from_probabilities({2: probs[2]}).dtype == np.uint8


def test_confidence_curve_by_hand():
    # frames 0 (painted), 1 bad & unsure, 2 good & sure, 3 bad & sure
    seq = {"frames": 4, "support_frames": {"1": [0]}, "confidence": [1.0, 0.2, 0.9, 0.8], "flagged": [1],
           "labels": {"1": {"frames": [1, 2, 3], "per_frame_dice": [0.3, 0.95, 0.6]}}}
    curve = {p["threshold"]: p for p in confidence_curve([seq], bad_dice=0.7, thresholds=[0.0, 0.5, 0.85, 1.0])}
    assert curve[0.0]["flag_rate"] == 0 and curve[0.0]["recall"] == 0 and math.isnan(curve[0.0]["precision"])
    assert curve[0.5]["flag_rate"] == pytest.approx(1 / 3) and curve[0.5]["recall"] == 0.5
    assert curve[0.85]["recall"] == 1.0 and curve[0.85]["precision"] == 1.0
    assert curve[1.0]["flag_rate"] == 1.0 and curve[1.0]["precision"] == pytest.approx(2 / 3)
    summary = flagging_summary([seq], bad_dice=0.7)
    assert (summary["bad_frames"], summary["flagged_bad_frames"], summary["query_frames"]) == (2, 1, 3)
