"""The propagation session: multi-label in one pass, re-propagation of only what changed, memory bounds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cineprop.errors import SupportError
from cineprop.io import Cine
from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import select_support
from cineprop.synthetic import moving_shapes

TINY = ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FewShotSegmenter(TINY).eval()


@pytest.fixture
def cine_and_labels():
    frames, labels = moving_shapes(48, 56, 12, labels=2, seed=5)
    return Cine(frames, name="synthetic"), labels


def count_decodes(model):
    calls = []
    handle = model.head.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[0]))
    return calls, handle


def test_all_labels_in_one_forward_pass(model, cine_and_labels):
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine)
    session.set_supports(select_support(labels, "middle"))
    calls, handle = count_decodes(model)
    try:
        result = session.propagate()
    finally:
        handle.remove()
    assert result.labels.shape == labels.shape and set(result.probabilities) == {1, 2}
    assert all(batch == 2 for batch in calls)           # both labels decoded together
    assert len(calls) == 11                              # one pass per query frame and sweep direction
    assert result.confidence.shape == (12,) and result.confidence[6] == 1.0
    for k in (1, 2):
        np.testing.assert_array_equal(result.labels[:, :, 6] == k, labels[:, :, 6] == k)


def test_repropagation_recomputes_only_what_changed(model, cine_and_labels):
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine)
    session.add_support(2, labels[:, :, 2])
    first = session.propagate()
    backbone_after_first = session.stats["backbone_frames"]
    decoded = session.stats["decoded"]
    session.propagate()                                  # nothing changed: nothing recomputed
    assert session.stats["decoded"] == decoded
    session.add_support(9, labels[:, :, 9])              # a correction at frame 9
    second = session.propagate()
    # forward: only frames 10, 11 (after the new support) are redone; frames 3..8 keep frame 2's chain.
    # backward: frames 3..8 and 0..1 now start from frame 9. 10 frames x 2 labels, of 2 x 11 x 2 in all.
    assert session.stats["decoded"] - decoded == 10 * 2
    assert session.stats["backbone_frames"] == backbone_after_first  # features were cached
    np.testing.assert_array_equal(second.labels[:, :, 9], labels[:, :, 9])
    np.testing.assert_array_equal(first.labels[:, :, 2], second.labels[:, :, 2])
    assert second.support_frames == [2, 9]
    session.remove_support(9)
    assert session.propagate().support_frames == [2]


def test_frames_between_painted_frames_are_bridged_once(model, cine_and_labels):
    """Painted at 2 and 9: frames 3..8 are decoded once more with both paintings as shots (all labels in
    one pass), cached, and that bridge is their result; a paint at 5 re-bridges only 3..4 and 6..8."""
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine)
    for f in (2, 9):
        session.add_support(f, labels[:, :, f])
    calls, handle = count_decodes(model)
    try:
        result = session.propagate()
    finally:
        handle.remove()
    assert session.stats["bridged"] == 6 * 2 and len(calls) == 2 * 8 + 6     # 8 query frames per sweep
    plain = PropagationSession(model, cine, SessionConfig(bridge=False))
    for f in (2, 9):
        plain.add_support(f, labels[:, :, f])
    unbridged = plain.propagate()
    assert plain.stats["bridged"] == 0
    between, outside = slice(3, 9), [0, 1, 10, 11]
    for k in (1, 2):       # the bridge replaces the sweeps' blend between the paintings, nowhere else
        assert not np.allclose(result.probabilities[k][:, :, between], unbridged.probabilities[k][:, :, between])
        np.testing.assert_array_equal(result.probabilities[k][:, :, outside],
                                      unbridged.probabilities[k][:, :, outside])
    session.propagate()
    assert session.stats["bridged"] == 6 * 2                 # nothing changed: nothing bridged again
    session.add_support(5, labels[:, :, 5])
    corrected = session.propagate()
    assert session.stats["bridged"] == 6 * 2 + 5 * 2
    fresh = PropagationSession(model, cine)
    for f in (2, 5, 9):
        fresh.add_support(f, labels[:, :, f])
    again = fresh.propagate()
    for k in (1, 2):
        np.testing.assert_allclose(again.probabilities[k], corrected.probabilities[k], atol=1e-5)


def test_forward_results_before_a_correction_are_reused(model, cine_and_labels):
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine)
    session.add_support(0, labels[:, :, 0])
    before = session.propagate()
    forward = {t: session._sweeps[1][t] for t in range(8)}
    session.add_support(8, labels[:, :, 8])
    after = session.propagate()
    assert all(session._sweeps[1][t] is forward[t] for t in range(8))      # reused, not recomputed
    assert all(session._sweeps[1][t] is not forward.get(t) for t in range(8, 12))
    np.testing.assert_array_equal(before.labels[:, :, 0], after.labels[:, :, 0])


def test_useful_shots_leave_out_far_painted_frames():
    from cineprop.shots import useful_shots

    assert useful_shots(29, [30, 45], 3, 3.0, cutoff=0.01) == [30]          # exp(−15/3) < 0.01 of the nearest
    assert useful_shots(29, [30, 45], 3, 3.0, cutoff=0.0) == [30, 45]
    assert useful_shots(29, [30, 40], 3, 3.0, cutoff=0.01) == [30, 40]       # exp(−10/3) ≥ 0.01
    assert useful_shots(5, [4, 3, 2, 1], 3, 3.0, cutoff=0.01) == [4, 3, 2]   # at most max_shots
    assert useful_shots(29, [30, 45], 3, 3.0, floor=0.5, cutoff=0.01) == [30, 45]   # a floor keeps it
    assert useful_shots(3, [], 3, 3.0, cutoff=0.01) == []


def test_a_far_correction_leaves_the_frames_near_other_paint_alone(model):
    """Paint at 0 and 15 of a 30-frame cine, then add 29: the backward sweep of frames 1..14 starts
    at 15 and frame 29 is 14 frames farther, a shot of weight exp(−14/3) < 1 % of frame 15's, so
    those frames are not decoded again; without the cutoff they are. Either way the result equals a
    fresh session given the same paint."""
    frames, labels = moving_shapes(40, 48, 30, labels=1, seed=3, speed=0.4)
    cine = Cine(frames, name="long")
    redone, results = {}, {}
    for cutoff in (0.01, 0.0):
        config = SessionConfig(shot_cutoff=cutoff)
        session = PropagationSession(model, cine, config)
        for f in (0, 15):
            session.add_support(f, labels[:, :, f])
        session.propagate()
        decoded = session.stats["decoded"]
        session.add_support(29, labels[:, :, 29])
        results[cutoff] = session.propagate()
        redone[cutoff] = session.stats["decoded"] - decoded
        fresh = PropagationSession(model, cine, config)
        for f in (0, 15, 29):
            fresh.add_support(f, labels[:, :, f])
        np.testing.assert_array_equal(fresh.propagate().probabilities[1], results[cutoff].probabilities[1])
    # backward 16..28 (the new paint's own reach); without the cutoff also backward 1..14
    assert redone[0.01] == 13 and redone[0.0] == 13 + 14
    agree = np.mean(results[0.01].labels == results[0.0].labels)
    assert agree > 0.999, agree


def test_feature_cache_is_bounded(model, cine_and_labels):
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine, replace(SessionConfig(), max_cached_frames=4, batch_frames=2))
    session.set_supports(select_support(labels, "first"))
    session.propagate()
    assert len(session._features) <= 4


def test_bad_supports(model, cine_and_labels):
    cine, labels = cine_and_labels
    session = PropagationSession(model, cine)
    with pytest.raises(SupportError, match="no support"):
        session.propagate()
    with pytest.raises(SupportError, match="expected"):
        session.add_support(1, labels[:10, :, 1])
    with pytest.raises(SupportError, match="outside 0..11"):
        session.add_support(12, labels[:, :, 1])
