"""Repropagation: one live session per cine gives a fresh session's result and recomputes only what changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from servers import tiny_checkpoint

from cineprop.io import Cine
from cineprop.methods import build_propagator
from cineprop.repropagate import Repropagator
from cineprop.support import SupportSet
from cineprop.synthetic import moving_shapes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return build_propagator("model", checkpoint=checkpoint)


@pytest.fixture
def cine_and_truth():
    frames, labels = moving_shapes(48, 56, 12, labels=2, seed=4, speed=0.0)  # shapes breathe, boxes stay put
    return Cine(frames, name="still"), labels


def assert_same(a, b):
    assert a.details["roi"] == b.details["roi"]
    assert np.mean(a.labels != b.labels) <= 1e-4
    for label in a.probabilities:
        np.testing.assert_allclose(a.probabilities[label], b.probabilities[label], atol=1e-4)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)


def test_each_repropagation_equals_a_fresh_session(model, cine_and_truth):
    cine, truth = cine_and_truth
    live = Repropagator(model, cine)
    assert live.reuses_work
    first = live.propagate(SupportSet.from_labels(truth, [0]))
    backbone = first.details["stats"]["backbone_frames"]
    for painted in ([0, 6], [0, 6, 11], [0, 11]):          # add, add, then remove a painted frame
        support = SupportSet.from_labels(truth, painted)
        again = live.propagate(support)
        assert_same(again, model.propagate(cine, support))
    assert again.details["repropagation"] == {"run": 4, "reused_session": True}
    assert again.details["stats"]["backbone_frames"] == backbone     # features computed by the first run only
    assert live.memory_bytes() > cine.frames.nbytes


def test_a_paint_that_grows_the_painted_area_inside_the_roi_equals_a_fresh_session(model):
    """The ROI is a function of the current paint: a paint that grows the painted area without leaving
    the ROI chosen before moves it as a fresh session would (it used to be kept, and the results differed)."""
    frames, truth = moving_shapes(128, 144, 12, labels=1, seed=4, speed=0.0)
    truth[100:108, 120:128, 6] = 1                 # a far paint on frame 6: the ROI grows to take it in
    cine = Cine(frames, name="still")
    live = Repropagator(model, cine)
    for painted in ([0], [0, 6], [0, 6, 11]):      # frame 11's paint lies inside that ROI but grows the box
        support = SupportSet.from_labels(truth, painted)
        assert_same(live.propagate(support), model.propagate(cine, support))


def test_a_repainted_frame_is_not_served_from_stale_encodings(model, cine_and_truth):
    cine, truth = cine_and_truth
    live = Repropagator(model, cine)
    live.propagate(SupportSet.from_labels(truth, [0, 6]))
    changed = truth.copy()
    changed[:, :, 6] = np.where(truth[:, :, 6] == 2, 0, truth[:, :, 6])  # label 2 erased on frame 6
    support = SupportSet.from_labels(changed, [0, 6])
    assert_same(live.propagate(support), model.propagate(cine, support))


def test_a_new_paint_recomputes_only_the_frames_that_use_it(model, cine_and_truth):
    cine, truth = cine_and_truth
    live = Repropagator(model, cine)
    live.propagate(SupportSet.from_labels(truth, [0, 3, 6, 9]))
    before = live.session.stats["decoded"]
    live.propagate(SupportSet.from_labels(truth, [0, 1, 3, 6, 9]))
    # forward: frames 2, 4, 5, 7, 8 have frame 1 among their 3 nearest painted frames behind them;
    # 10, 11 (shots 9, 6, 3) and the whole backward sweep (frame 1 is behind none of them) are reused.
    assert live.session.stats["decoded"] - before == 5 * 2


def test_methods_without_a_session_run_again(cine_and_truth):
    cine, truth = cine_and_truth
    copy = build_propagator("copy")
    live = Repropagator(copy, cine)
    assert not live.reuses_work and live.memory_bytes() == 0
    support = SupportSet.from_labels(truth, [0, 7])
    np.testing.assert_array_equal(live.propagate(support).labels, copy.propagate(cine, support).labels)


def test_predict_with_several_supports_reuses_the_session(checkpoint, tmp_path, synthetic_files, synthetic):
    from cineprop.cli import main
    from cineprop.io import read_image, read_label, write_label

    image, _ = synthetic_files
    _, truth = synthetic
    volume = read_image(image)
    supports, outs = [], []
    for painted in ([0], [0, 5]):
        labels = np.zeros_like(truth)
        labels[:, :, painted] = truth[:, :, painted]
        supports.append(str(write_label(tmp_path / f"support{len(painted)}.nii.gz", labels, volume)))
        outs.append(str(tmp_path / f"out{len(painted)}.nii.gz"))
    conf = tmp_path / "conf.json"
    assert main(["predict", str(image), "--support", *supports, "--out", *outs, "--method", "model",
                 "--checkpoint", checkpoint, "--confidence", str(conf)]) == 0
    assert [e["reused_session"] for e in json.loads(conf.read_text())] == [False, True]
    alone = tmp_path / "alone.nii.gz"
    assert main(["predict", str(image), "--support", supports[1], "--out", str(alone), "--method", "model",
                 "--checkpoint", checkpoint]) == 0
    again, fresh = read_label(outs[1], like=volume).array, read_label(alone, like=volume).array
    assert np.mean(again != fresh) <= 1e-4
    assert main(["predict", str(image), "--support", *supports, "--out", outs[0], "--method", "copy"]) == 2
