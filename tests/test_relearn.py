"""The video phase's relearning core: TAU identity, loss terms, determinism, config rules, the guard."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cineprop.errors import CinepropError
from cineprop.io import Cine
from cineprop.model import FewShotSegmenter, TemporalAttentionUnit, VideoSegmenter
from cineprop.relearn import ConsistencyRelearner, RelearnConfig
from cineprop.relearn.clip_from_stage1 import build_clip, run_stage1
from cineprop.relearn.propagator import collapse_check
from cineprop.relearn.two_stage import plan_item, predict
from cineprop.support import select_support
from relearn_helpers import shifted_cine, tiny_image_model

#: every weight 0 except one; lambda_p = 1e-6 only satisfies the anti-collapse rule (λ_p > 0 or λ_s > 0)
ALONE = dict(lambda_t=0.0, lambda_f=0.0, lambda_p=1e-6, lambda_s=0.0, lambda_w=0.0, lambda_tps=0.0)


@pytest.fixture(scope="module")
def model():
    return tiny_image_model()


@pytest.fixture(scope="module")
def staged(model):
    frames, labels = shifted_cine(seed=2)
    support = select_support(labels, "first")
    session, stage1 = run_stage1(model, Cine(frames, name="shifted"), support)
    return session, stage1, labels


def test_tau_is_identity_at_start_and_attends_only_its_window():
    torch.manual_seed(0)
    tau = TemporalAttentionUnit(8, window=1)
    x = torch.randn(2, 5, 8, 6, 6)
    assert torch.equal(tau(x), x)
    torch.nn.init.normal_(tau.out.weight)
    y = tau(x)
    assert not torch.allclose(y, x)
    x2 = x.clone()
    # frame 4 is outside frame 2's window (±1). Not a constant offset: the unit's GroupNorm removes one,
    # and frame 3 would then change only by rounding (the old test passed or failed with the thread count)
    x2[:, 4] += torch.randn_like(x2[:, 4])
    y2 = tau(x2)
    assert torch.allclose(y2[:, :3], y[:, :3], atol=1e-6) and not torch.allclose(y2[:, 3], y[:, 3])
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[:, 3] = False                                   # an invalid frame is not attended to
    assert torch.allclose(tau(x2, valid)[:, 2], tau(x, valid)[:, 2], atol=1e-6)


def test_two_stage_output_equals_the_image_model_before_relearning(model, staged):
    session, stage1, _ = staged
    clip = build_clip(session, stage1, RelearnConfig())
    probs, feats = predict(model, clip)
    student = ConsistencyRelearner(model, RelearnConfig()).new_student()
    assert isinstance(student, VideoSegmenter) and type(model) is FewShotSegmenter  # the caller's model is untouched
    probs_tau, feats_tau = predict(student, clip)
    assert torch.equal(probs, probs_tau) and torch.equal(feats, feats_tau)
    result = ConsistencyRelearner(model, RelearnConfig(steps=0)).adapt(clip)
    assert result.steps == 0 and torch.equal(predict(result.student, clip)[0], probs)


def test_stage2_plan():
    # one painted frame at 2: frame 5 uses it plus the memory of frame 4; frame 0 looks forward to frame 1
    assert plan_item(0, [2], 5, 8).supports[0][0] == 2 and plan_item(0, [2], 5, 8).memory[0] == 4
    assert plan_item(0, [2], 0, 8).memory[0] == 1
    assert plan_item(0, [2], 2, 8).memory is None                                  # painted: itself
    excl = plan_item(0, [2], 2, 8, exclude_self=True)
    assert excl.supports == () and excl.memory[0] == 3                             # predicted without itself
    assert plan_item(0, [2, 7], 6, 8).memory is None                               # neighbour 7 is painted


@pytest.mark.parametrize("term", ["t", "f", "p", "s", "w", "tps"])
def test_each_loss_term_decreases_when_optimised_alone(model, staged, term):
    session, stage1, _ = staged
    weights = dict(ALONE, **{f"lambda_{term}": 1.0})
    cfg = RelearnConfig(**weights, window_frames=12, copies=2, copies_per_step=2, lr=3e-3, patience=0, steps=12)
    clip = build_clip(session, stage1, cfg)
    relearner = ConsistencyRelearner(model, cfg)
    state = relearner.prepare(clip)
    student = None
    if term in ("f", "p"):  # both are 0 while the student equals the teacher: move it away first
        push = RelearnConfig(**dict(ALONE, lambda_p=0.0, lambda_s=1.0), lr=3e-3, steps=5, patience=0,
                             copies=2, copies_per_step=2)
        student = ConsistencyRelearner(model, push).adapt(build_clip(session, stage1, push)).student
    history = relearner.adapt(state, student=student).history
    first, last = history[0][term], history[-1][term]
    assert first > 0 and last < 0.9 * first, (term, first, last)


def test_relearning_is_deterministic_and_leaves_the_teacher_alone(model, staged):
    session, stage1, _ = staged
    before = copy.deepcopy(model.state_dict())
    cfg = RelearnConfig(steps=4, patience=0)
    runs = [ConsistencyRelearner(model, cfg).adapt(build_clip(session, stage1, cfg)) for _ in range(2)]
    other = ConsistencyRelearner(model, RelearnConfig(steps=4, patience=0, seed=1)).adapt(
        build_clip(session, stage1, RelearnConfig(seed=1)))
    a, b, c = (r.student.state_dict() for r in (*runs, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history == runs[1].history
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_early_stop_on_a_plateau(model, staged):
    session, stage1, _ = staged
    cfg = RelearnConfig(steps=60, patience=3, tolerance=0.5)      # "improve by half or stop"
    result = ConsistencyRelearner(model, cfg).adapt(build_clip(session, stage1, cfg))
    assert result.stopped_early and result.steps < 60


def test_config_rules():
    with pytest.raises(CinepropError, match="lambda_p = 0 needs lambda_s > 0"):
        RelearnConfig(lambda_p=0.0, lambda_s=0.0)
    RelearnConfig(lambda_p=0.0, lambda_s=1.0)                    # anchored by the painted frames: allowed
    with pytest.raises(CinepropError, match="train must be"):
        RelearnConfig(train=("tau", "decoder"))
    with pytest.raises(CinepropError, match="finite and ≥ 0"):
        RelearnConfig(lambda_w=-1.0)
    cfg = RelearnConfig().with_options({"lambda_w": "0", "steps": "7", "train": "tau,head"})
    assert cfg.lambda_w == 0.0 and cfg.steps == 7 and cfg.train == ("tau", "head") and cfg.fused_frozen
    with pytest.raises(CinepropError, match="unknown relearn option"):
        RelearnConfig().with_options({"lambda_x": "1"})
    with pytest.raises(CinepropError, match="expected int"):
        RelearnConfig().with_options({"steps": "many"})
    assert RelearnConfig.from_dict(cfg.to_dict()) == cfg


def test_collapse_guard_flags_a_constructed_collapse():
    stage1 = torch.zeros(2, 4, 16, 16)
    stage1[:, :, 6:10, 6:10] = 0.9
    query = np.ones((2, 4), bool)
    query[:, 0] = False
    same = stage1.clone()
    empty = stage1.clone()
    empty[1] = 0.0                                           # label slot 1 vanished
    grown = stage1.clone()
    grown[0] = 0.9                                           # slot 0 covers everything (×16)
    shifted = torch.zeros_like(stage1)
    shifted[:, :, 0:4, 0:4] = 0.9                             # same area, elsewhere
    half = stage1.clone()
    half[:, :, 6:10, 6:8] = 0.0                              # a genuine correction may halve the area: kept
    cfg = RelearnConfig()
    assert collapse_check(stage1, same, query, cfg) == {} and collapse_check(stage1, half, query, cfg) == {}
    assert list(collapse_check(stage1, empty, query, cfg)) == [1]
    assert "area" in collapse_check(stage1, grown, query, cfg)[0]
    assert "Dice" in collapse_check(stage1, shifted, query, cfg)[0]
    dropped = collapse_check(stage1, same, query, cfg, {0: 0.9, 1: 0.8}, {0: 0.85, 1: 0.3})
    assert list(dropped) == [1] and "without themselves" in dropped[1]


def test_video_model_from_image_copies_it_and_seeds_its_tau(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(11)
    stream = torch.get_rng_state()
    a, b = VideoSegmenter.from_image(model, seed=3), VideoSegmenter.from_image(model, seed=3)
    assert torch.equal(torch.get_rng_state(), stream)                          # the caller's random stream
    assert all(torch.equal(x, y) for x, y in zip(a.tau.state_dict().values(), b.tau.state_dict().values()))
    assert not torch.equal(a.tau.query.weight, VideoSegmenter.from_image(model, seed=4).tau.query.weight)
    image_part = {k: v for k, v in a.state_dict().items() if not k.startswith("tau.")}
    assert image_part.keys() == before.keys() and all(torch.equal(image_part[k], before[k]) for k in before)
    next(a.fusion.parameters()).data += 1.0                                    # a copy: the image model is untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    again = VideoSegmenter.from_image(a)                                       # a video model keeps its TAU
    assert all(torch.equal(x, y) for x, y in zip(again.state_dict().values(), a.state_dict().values()))
    assert a.temporal_window == model.config.tau_window and model.temporal_window == 0
    x = torch.randn(1, 3, model.config.decoder[2], 4, 4)
    assert model.temporal_attend(x) is x and torch.equal(a.temporal_attend(x), x)  # identity before relearning