"""The video phase end to end: the relearn method, its guard, ``cineprop relearn``, long clips, flagging."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cineprop.checkpoints import load_model, read_checkpoint, save_checkpoint
from cineprop.cli import main
from cineprop.evaluate import looped
from cineprop.io import Cine, Geometry, Volume, read_image, write_image, write_label
from cineprop.methods import build_propagator
from cineprop.metrics import flagging_summary, score_label
from cineprop.model import FewShotSegmenter, VideoSegmenter
from cineprop.relearn.propagator import TwoStagePropagator
from cineprop.relearn.two_stage import predict
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import query_frames, select_support
from cineprop.synthetic import moving_shapes
from relearn_helpers import shifted_cine, tiny_image_model


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_image_model(), "image")


def mean_dice(result, truth, support) -> float:
    return float(np.mean([score_label(result.labels == k, truth == k, query_frames(support, k))["dice"]
                          for k in support.labels]))


def test_relearning_improves_dice_and_keeps_the_support(image_checkpoint):
    # relearning itself, so without the flow blend both methods would otherwise share
    image = build_propagator("model", checkpoint=str(image_checkpoint), options={"flow_weight": "0"})
    # the shift is in appearance, so the fusion adapts too (the ACDC default trains only tau and head)
    relearn = build_propagator("relearn", checkpoint=str(image_checkpoint), steps=30,
                               options={"train": "tau,fusion,head", "flow_weight": "0"})
    gains = []
    for seed in range(1, 7):                      # a contrast/noise shift the image model never saw
        frames, truth = shifted_cine(seed)
        cine, support = Cine(frames, name=f"shifted{seed}"), select_support(truth, "first")
        before, after = image.propagate(cine, support), relearn.propagate(cine, support)
        assert after.details["relearn"]["steps"] > 0 and not after.details["relearn"]["reverted"]
        gains.append(mean_dice(after, truth, support) - mean_dice(before, truth, support))
        for k in support.labels:                  # painted frames stay exactly as painted
            for f in support.frames_of(k):
                np.testing.assert_array_equal(after.labels[:, :, f] == k, truth[:, :, f] == k)
        assert after.confidence[support.frames].min() == 1.0
    # Measured per seed (1 thread), on three floating-point paths of torch's CPU kernels (the tiny model's
    # 150 training steps amplify them): +0.011 +0.020 +0.005 +0.113 +0.025 +0.003 (mean +0.030);
    # ATEN_CPU_CAPABILITY=default +0.024 +0.015 +0.002 +0.054 +0.020 +0.007 (+0.020); AVX512 with oneDNN
    # +0.007 -0.004 -0.014 +0.080 +0.046 -0.001 (+0.019). The bar asks for a mean gain and no real loss on
    # any seed, not their sizes: a no-op relearning (every gain exactly 0) or a harmful one fails it.
    assert np.mean(gains) > 0.01 and min(gains) > -0.03, gains
    # and the relearned model itself still segments the painted frames (before they are pasted back)
    clip_probs = predict(relearn.last_result.student, _clip_of(relearn, cine, support))[0]
    painted = select_support(truth, "first")
    roi_masks = {f: m for f, m in _clip_of(relearn, cine, painted).painted[0].items()}
    for f, m in roi_masks.items():               # measured 0.83 on this tiny model; a collapse gives ~0
        p = clip_probs[0, f] > 0.5
        assert 2 * float((p & (m > 0.5)).sum()) / float(p.sum() + (m > 0.5).sum()) > 0.75


def _clip_of(propagator, cine, support):
    from cineprop.relearn.clip_from_stage1 import build_clip, run_stage1

    session, stage1 = run_stage1(propagator.stage1, cine, support)
    return build_clip(session, stage1, propagator.config, training=False)


def test_guard_reverts_a_collapsed_relearning(image_checkpoint):
    frames, truth = shifted_cine(3)
    cine, support = Cine(frames, name="collapse"), select_support(truth, "first")
    wrecked = build_propagator("relearn", checkpoint=str(image_checkpoint), options={"lr": "50", "steps": "3",
                                                                                     "patience": "0"})
    result = wrecked.propagate(cine, support)
    assert set(result.details["relearn"]["reverted"]) == {"1", "2"}       # every label collapsed
    image = build_propagator("model", checkpoint=str(image_checkpoint)).propagate(cine, support)
    np.testing.assert_array_equal(result.labels, image.labels)            # …and fell back to the image model


@pytest.fixture
def cine_folder(tmp_path):
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for seed in (2, 5):
        frames, truth = shifted_cine(seed, frames=8)
        write_image(tmp_path / f"case{seed}.nii.gz", frames, geometry)
        write_label(tmp_path / f"case{seed}_label.nii.gz", truth, Volume(frames, geometry))
    return tmp_path


def test_cineprop_relearn_writes_a_resumable_loadable_checkpoint(cine_folder, image_checkpoint, tmp_path):
    out = tmp_path / "runs" / "relearned.pt"
    args = ["relearn", str(cine_folder), "--out", str(out), "--checkpoint", str(image_checkpoint), "--frames",
            "first", "--steps-per-cine", "2", "--save-every", "2", "--quiet"]
    assert main(args + ["--steps", "3"]) == 0
    first = read_checkpoint(out.with_name("relearned.last.pt"))["extra_state"]
    assert main(args + ["--steps", "5"]) == 0                              # resumes at step 3
    last = read_checkpoint(out.with_name("relearned.last.pt"))["extra_state"]
    assert first["step"] == 3 and last["step"] == 5 and last["history"][:3] == first["history"]
    model, payload = load_model(out)
    assert payload["kind"] == "relearn" and isinstance(model, VideoSegmenter) and payload["meta"]["steps"] == 5
    image = tiny_image_model().state_dict()
    assert all(torch.equal(v, image[k]) for k, v in payload["extra_state"]["stage1_state_dict"].items())
    # --method model with a relearned checkpoint runs the two-stage inference
    propagator = build_propagator("model", checkpoint=str(out))
    assert isinstance(propagator, TwoStagePropagator)
    frames, truth = shifted_cine(5, frames=8)
    support = select_support(truth, "first")
    result = propagator.propagate(Cine(frames), support)
    assert result.details["two_stage"] and result.labels.shape == truth.shape
    np.testing.assert_array_equal(result.labels[:, :, support.frames[0]] > 0, truth[:, :, support.frames[0]] > 0)
    assert mean_dice(result, truth, support) > 0.5


def test_evaluate_relearn_reports_flagging_and_rejects_unknown_options(cine_folder, image_checkpoint, tmp_path,
                                                                        capsys):
    report_path = tmp_path / "r.json"
    assert main(["evaluate", str(cine_folder), "--method", "relearn", "--checkpoint", str(image_checkpoint),
                 "--steps", "2", "--option", "lambda_w=0", "--option", "memory_threshold=0.5", "--quiet",
                 "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["method"] == "relearn" and report["sequences"] == 2
    assert {"recall_bad_frames", "flag_rate", "bad_frames"} <= set(report["flagging"])
    assert all(s["relearn"]["steps"] == 2 for s in report["per_sequence"])
    assert "flags:" in capsys.readouterr().out
    assert main(["evaluate", str(cine_folder), "--method", "relearn", "--option", "lambda_x=1", "--quiet",
                 "--checkpoint", str(image_checkpoint)]) == 2
    assert "unknown relearn option" in capsys.readouterr().err


def test_long_clip_memory_survives_dropouts():
    """A 300-frame clip (a cine looped forwards and backwards) with blank dropout frames.

    Plain propagation (every prediction written to memory, even the empty one of a dropout) loses much
    or all of the object after the dropouts; confidence-gated memory that never stores an empty
    prediction and re-anchors on the painted frame keeps it to the end of the clip.
    """
    model = tiny_image_model()
    frames, labels = moving_shapes(64, 64, 12, labels=2, seed=301, noise=0.08)
    cine, truth = looped(Cine(frames, name="loop"), labels, 300)
    dropouts = list(range(25, 300, 40))
    blanked = cine.frames.copy()
    blanked[:, :, dropouts] = float(blanked.mean())
    keep = [t for t in range(cine.num_frames) if t not in dropouts]
    support = select_support(truth, "first")
    scores = {}
    # the memory alone (flow_weight 0): optical flow cannot follow through blank frames either
    plain = SessionConfig(memory_threshold=0.0, memory_needs_object=False, flow_weight=0.0)
    for name, config in (("plain", plain), ("gated", SessionConfig(support_weight_floor=0.1, flow_weight=0.0))):
        session = PropagationSession(model, Cine(blanked, name=name), config)
        session.set_supports(support)
        pred = session.propagate().labels
        late = [t for t in keep if t >= 225]                                 # the last quarter of the clip
        scores[name] = np.mean([score_label(pred[:, :, late] == k, truth[:, :, late] == k, range(len(late)))["dice"]
                                for k in support.labels])
    # measured (plain vs gated): 0.00 vs 0.68, 0.00 vs 0.73 (ATEN_CPU_CAPABILITY=default), 0.40 vs 0.87 (AVX512):
    # how much plain memory keeps depends on the tiny model's floating point; the gated memory's lead does not
    assert scores["gated"] > 0.5 and scores["gated"] - scores["plain"] > 0.3, scores


def test_flagging_summary_counts():
    per_sequence = [
        {"frames": 5, "support_frames": {"1": [0], "2": [0]}, "flagged": [2, 3],
         "labels": {"1": {"frames": [1, 2, 3, 4], "per_frame_dice": [0.9, 0.2, 0.8, 0.9]},
                    "2": {"frames": [1, 2, 3, 4], "per_frame_dice": [0.9, 0.9, 0.9, 0.4]}}},
        {"frames": 3, "support_frames": {"1": [2]}, "flagged": [],
         "labels": {"1": {"frames": [0, 1], "per_frame_dice": [0.95, 0.9]}}},
    ]
    s = flagging_summary(per_sequence)
    assert (s["bad_frames"], s["flagged_bad_frames"], s["flagged_frames"], s["query_frames"]) == (2, 1, 2, 6)
    assert s["recall_bad_frames"] == 0.5 and s["flag_rate"] == pytest.approx(2 / 6)


def test_relearn_pairs_takes_explicit_files_and_restarts_from_stored_image_weights(cine_folder, image_checkpoint,
                                                                                 tmp_path):
    from cineprop.checkpoints import load_image_model
    from cineprop.errors import InputError
    from cineprop.relearn.collection import relearn_pairs
    from cineprop.relearn.config import RelearnConfig

    pairs = [(cine_folder / f"case{s}.nii.gz", cine_folder / f"case{s}_label.nii.gz") for s in (2, 5)]
    seen = []
    first = relearn_pairs(pairs, tmp_path / "a.pt", str(image_checkpoint), RelearnConfig(steps=2), steps_per_cine=1,
                          progress=False, on_step=lambda step, total, terms: seen.append((step, total, terms)))
    assert [(step, total) for step, total, _ in seen] == [(1, 2), (2, 2)] and first["steps"] == 2
    assert first["cines"] == 2 and all(isinstance(v, float) for *_, terms in seen for v in terms.values())
    relearned, payload = load_model(tmp_path / "a.pt")
    assert payload["kind"] == "relearn" and payload["meta"]["studies"] == ["case2", "case5"]
    # a relearn checkpoint as the start: its stored image weights, not the relearned layers, are the teacher
    image, image_payload = load_image_model(tmp_path / "a.pt")
    assert image_payload["kind"] == "image" and type(image) is FewShotSegmenter
    tiny = tiny_image_model().state_dict()
    assert all(torch.equal(v, tiny[k]) for k, v in image.state_dict().items())
    relearn_pairs(pairs, tmp_path / "b.pt", str(tmp_path / "a.pt"), RelearnConfig(steps=1), progress=False)
    again = read_checkpoint(tmp_path / "b.pt")
    assert all(torch.equal(v, tiny[k]) for k, v in again["extra_state"]["stage1_state_dict"].items())
    empty = write_label(tmp_path / "empty.nii.gz", np.zeros((64, 64, 8), np.uint8), read_image(pairs[0][0]))
    with pytest.raises(InputError, match="no painted frame"):
        relearn_pairs([(pairs[0][0], empty)], tmp_path / "c.pt", str(image_checkpoint), RelearnConfig(steps=1),
                      progress=False)
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        relearn_pairs([(tmp_path / "missing.nii.gz", empty)], tmp_path / "c.pt", str(image_checkpoint))
    assert not (tmp_path / "c.pt").exists()
