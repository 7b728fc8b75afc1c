"""Segments ⇄ label values, support bookkeeping across propagations, and result parsing."""

from __future__ import annotations

import numpy as np
import pytest

from CinePropLib.conversions import ConversionError
from CinePropLib.results import parse_result
from CinePropLib.segments import (
    PALETTE,
    SegmentSpec,
    assign_values,
    compose_labels,
    label_info,
    remap_for_import,
    result_segments,
    split_labels,
)
from CinePropLib.support import SupportTracker, changed_frames, next_flagged, painted_frames, support_label


def test_segment_names_take_the_servers_values():
    known = {"background": 0, "RV": 1, "myocardium": 2, "LV": 3}
    assert assign_values(["lv", "scar", "rv"], known) == {"lv": 3, "scar": 2, "rv": 1}
    assert assign_values(["a", "b"]) == {"a": 1, "b": 2}
    with pytest.raises(ConversionError, match="unique"):
        assign_values(["LV", "LV"])


def test_compose_and_split_keep_values_later_segment_wins():
    shape = (6, 5, 3)
    a = np.zeros(shape, bool)
    a[1:4, 1:4, 0] = True
    b = np.zeros(shape, bool)
    b[3:5, 3:5, 0] = True
    labels = compose_labels([(3, a), (7, b)], shape)
    assert labels[3, 3, 0] == 7 and labels[1, 1, 0] == 3 and labels.dtype == np.uint8
    masks = split_labels(labels)
    assert sorted(masks) == [3, 7]
    np.testing.assert_array_equal(compose_labels(masks.items(), shape), labels)
    with pytest.raises(ConversionError):
        compose_labels([(1, np.zeros((2, 2, 2)))], shape)


def test_result_segments_keep_names_and_colours():
    sent = [SegmentSpec("left ventricle", (0.1, 0.2, 0.3), 3)]
    segs = result_segments([0, 3, 1, 9], {"RV": 1, "LV": 3}, sent)
    assert [(s.name, s.value) for s in segs] == [("RV", 1), ("left ventricle", 3), ("label 9", 9)]
    assert segs[1].color == (0.1, 0.2, 0.3)
    assert segs[0].color == PALETTE[0]
    info = label_info(segs)
    assert info[1] == {"name": "left ventricle", "idx": 3, "color": [0.1, 0.2, 0.3]}


def test_remap_for_import_orders_by_segment_list():
    labels = np.array([[[0, 3, 7, 5]]], dtype=np.uint8)
    segs = [SegmentSpec("b", PALETTE[0], 7), SegmentSpec("a", PALETTE[1], 3)]
    np.testing.assert_array_equal(remap_for_import(labels, segs), [[[0, 2, 1, 0]]])


def _labels(frames: int) -> np.ndarray:
    return np.zeros((8, 6, frames), dtype=np.uint8)


def test_support_tracker_first_then_corrections():
    painted = _labels(6)
    painted[2:4, 2:4, 1] = 1
    painted[3:5, 1:3, 4] = 2
    tracker = SupportTracker(6)
    assert tracker.frames(painted) == [1, 4] == painted_frames(painted)

    result = painted.copy()
    for t in (0, 2, 3, 5):                              # the server filled the query frames
        result[2:5, 2:4, t] = 1
    tracker.record(result, [1, 4])
    assert tracker.frames(result) == [1, 4]              # nothing changed: same support

    corrected = result.copy()
    corrected[5, 3, 3] = 1                               # the user fixes frame 3
    assert changed_frames(corrected, result) == [3]
    assert tracker.frames(corrected) == [1, 3, 4]
    tracker.confirm(5)                                   # frame 5 reviewed, correct as is
    assert tracker.frames(corrected) == [1, 3, 4, 5]

    erased = corrected.copy()
    erased[:, :, 1] = 0                                  # an erased support frame holds nothing to send
    assert tracker.frames(erased) == [3, 4, 5]
    with pytest.raises(ConversionError):
        tracker.confirm(6)


def test_support_label_clears_query_frames():
    labels = _labels(4)
    labels[..., :] = 2
    out = support_label(labels, [0, 2])
    assert painted_frames(out) == [0, 2]
    assert labels.all() and out[..., 0].all()
    with pytest.raises(ConversionError):
        support_label(labels, [4])


def test_next_flagged_wraps():
    assert next_flagged([2, 7, 5], 5, 10) == 7
    assert next_flagged([2, 7, 5], 7, 10) == 2
    assert next_flagged([2], 2, 10) == 2
    assert next_flagged([], 0, 10) is None
    assert next_flagged([12], 0, 10) is None


def test_parse_result_reads_top_level_or_nested_keys():
    labels = _labels(5)
    labels[..., 0] = 1
    details = {"confidence": [1, 0.9, 0.2, 0.45, 0.8], "support_frames": [0], "label_names": {"LV": 1},
               "latencies": {"total": 1.25}}
    res = parse_result(labels, details, threshold=0.5)
    assert res.flagged == [2, 3] and res.support_frames == [0] and res.seconds == 1.25
    assert res.rows()[0] == (0, "1.00", "support") and res.rows()[2] == (2, "0.20", "flagged")
    assert "2 flagged (2, 3)" in res.summary()

    nested = parse_result(labels, {"result": {"confidence": [0.1] * 5, "flagged": [4, 0], "support_frames": [0]}})
    assert nested.flagged == [4]                         # a support frame is never flagged
    plain = parse_result(labels, {})
    assert plain.confidence is None and plain.flagged == [] and plain.rows()[1][1] == "—"
    with pytest.raises(ConversionError, match="4 confidences for 5 frames"):
        parse_result(labels, {"confidence": [1, 1, 1, 1]})
