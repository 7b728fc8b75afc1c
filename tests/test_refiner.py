"""The carrier refiner (registration-guided refinement, :mod:`cineprop.refine`): an untrained refiner
leaves carried masks unchanged, one rule makes its input at training and inference, a short training
run learns a systematic carrier error, and the option reaches every carrier and the session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cineprop.checkpoints import save_checkpoint
from cineprop.errors import CheckpointError, CinepropError
from cineprop.flow import FlowField, anchored_carry, warp
from cineprop.io import Cine
from cineprop.methods import build_propagator
from cineprop.model.refiner import CarrierRefiner, RefinerConfig
from cineprop.refine import Refiner, refine_roi, refiner_input
from cineprop.support import SupportSet
from cineprop.synthetic import moving_shapes
from cineprop.training.refine_data import cine_samples, image_samples, synthetic_samples
from cineprop.training.synthetic_shapes import shape_change_pair
from cineprop.training.train_refiner import (RefinerTrainConfig, _augment, _batch, _source_counts, refine_loss,
                                             train_refiner, validate)


@pytest.fixture(scope="module")
def shapes():
    frames, labels = moving_shapes(80, 80, 8, labels=2, seed=3, speed=1.0)
    return frames, labels


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("refiner") / "untrained.pt"
    save_checkpoint(path, CarrierRefiner(RefinerConfig(resolution=48)), "refiner")
    return str(path)


def test_an_untrained_refiner_returns_the_carried_mask(shapes, untrained):
    frames, labels = shapes
    field = FlowField(frames, "dis")
    carried = anchored_carry(field, (labels[:, :, 0] == 1).astype(np.float32), 0, 5)
    moved = warp(field.frame(0), field.anchored(0, 5))
    refined = Refiner.load(untrained).refine_crop(field.frame(5), moved, carried)
    assert np.abs(refined - carried).max() < 0.02        # the logit of a clipped probability, and back


def test_nothing_to_refine_around_an_empty_carried_mask(untrained):
    empty = np.zeros((40, 40), np.float32)
    assert refine_roi(empty) is None
    assert Refiner.load(untrained).refine_crop(np.ones((40, 40)), np.ones((40, 40)), empty) is empty


def test_refiner_input_channels_and_scale(shapes):
    frames, labels = shapes
    carried = (labels[:, :, 0] == 2).astype(np.float32)
    roi = refine_roi(carried)
    x = refiner_input(frames[:, :, 1] * 300.0, frames[:, :, 0] * 300.0, carried, roi, 32)
    y = refiner_input(frames[:, :, 1], frames[:, :, 0], carried, roi, 32)
    assert x.shape == (3, 32, 32) and np.allclose(x, y, atol=0.02)      # intensity scale hardly matters
    assert abs(x[0].mean()) < 1e-4 and 0.5 < x[0].std() < 1.5
    assert x[2].min() >= 0 and x[2].max() <= 1 and x[2].max() > 0.5


def test_samples_pair_the_carried_mask_with_the_truth(shapes):
    frames, labels = shapes
    samples = cine_samples(frames, labels, 32, max_distance=2)
    assert len(samples) == 2 * (2 * 7 + 2 * 6)            # 2 labels × ordered pairs 1 or 2 frames apart
    dices = [2 * ((x[2] > 0.5) & y).sum() / ((x[2] > 0.5).sum() + y.sum()) for x, y in samples]
    assert np.median(dices) > 0.8                          # smooth motion: the carrier is nearly right
    rng = np.random.default_rng(0)
    more = image_samples(rng, frames[:, :, 0], labels[:, :, 0] == 1, 32, copies=3)
    assert len(more) == 3 and more[0][0].dtype == np.float16


def _biased_samples(n: int, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carried masks that are the truth grown by 3 pixels: a systematic carrier error to learn."""
    import cv2

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        frames, labels = moving_shapes(resolution, resolution, 2, labels=1, seed=int(rng.integers(1 << 30)))
        truth = labels[:, :, 1] == 1
        grown = cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
        roi = refine_roi(grown)
        xs.append(refiner_input(frames[:, :, 1], frames[:, :, 0], grown, roi, 32).astype(np.float16))
        ys.append(roi.crop(truth.astype(np.float32), 32, nearest=True) > 0.5)
    return np.stack(xs), np.stack(ys)


def test_training_learns_a_systematic_carrier_error(tmp_path):
    x, y = _biased_samples(48, 48, 0)
    vx, vy = _biased_samples(16, 48, 1)
    np.savez(tmp_path / "samples.npz", cine_x=x[:24], cine_y=y[:24], image_x=x[24:], image_y=y[24:], val_x=vx, val_y=vy)
    cfg = RefinerTrainConfig(out=str(tmp_path), steps=150, batch=16, lr=3e-3, validate_every=150, threads=1,
                             resolution=32)
    summary = train_refiner(cfg, progress=False)
    assert summary["best"]["dice"] > summary["best"]["carried"] + 0.05
    assert Refiner.load(tmp_path / "best.pt").meta["best"]["step"] == 150


def test_refine_loss_is_lower_for_the_truth():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    assert refine_loss(10 * (2 * target - 1), target) < refine_loss(torch.zeros_like(target), target)
    model = CarrierRefiner(RefinerConfig(resolution=16))
    x = np.zeros((1, 3, 16, 16), np.float16)
    x[0, 2, 4:12, 4:12] = 1
    scores = validate(model, x, x[:, 2] > 0.5)
    assert scores["refined"] == pytest.approx(1.0) and scores["carried"] == pytest.approx(1.0)


def test_the_option_reaches_the_carriers_and_the_session(shapes, untrained, tmp_path):
    frames, labels = shapes
    cine = Cine(frames)
    support = SupportSet.from_labels(np.where(np.arange(8) == 0, labels, 0).astype(labels.dtype))
    plain = build_propagator("dis", anchor=True).propagate(cine, support)
    refined = build_propagator("dis", anchor=True, refine=True, refiner=untrained).propagate(cine, support)
    assert np.array_equal(plain.labels, refined.labels)
    with pytest.raises(CinepropError, match="needs anchor"):
        build_propagator("flow", refine=True, refiner=untrained)
    model = build_propagator("model", options={"refine_carrier": "true", "refiner": untrained,
                                               "flow_weight": "1"}).propagate(cine, support)
    assert np.array_equal(model.labels, plain.labels)
    image = tmp_path / "image.pt"
    from cineprop.model import FewShotSegmenter, ModelConfig

    save_checkpoint(image, FewShotSegmenter(ModelConfig()), "image")
    with pytest.raises(CheckpointError, match="not a carrier refiner"):
        Refiner.load(image)


def test_the_gate_refines_only_frames_registration_does_not_explain(shapes, tmp_path):
    """A refiner that erases everything (output bias −20) erases every frame with ``refine_below`` 1,
    none with −1 (every match is ≥ −1), and on this smooth cine (matches ≈ 1) none at 0.5."""
    frames, labels = shapes
    eraser = CarrierRefiner(RefinerConfig(resolution=32))
    torch.nn.init.constant_(eraser.out.bias, -20.0)
    path = tmp_path / "eraser.pt"
    save_checkpoint(path, eraser, "refiner")
    cine = Cine(frames)
    support = SupportSet.from_labels(np.where(np.arange(8) == 0, labels, 0).astype(labels.dtype))
    kept = {}
    for below in (1.0, -1.0, 0.5):
        out = build_propagator("dis", anchor=True, refine=True, refiner=str(path), refine_below=below)
        kept[below] = (out.propagate(cine, support).labels[:, :, 1:] > 0).sum()
    assert kept[1.0] == 0
    assert kept[-1.0] == kept[0.5] == (build_propagator("dis", anchor=True).propagate(cine, support).labels[:, :, 1:] > 0).sum()


def test_batches_without_acdc_crops_come_from_the_images():
    x, y = _biased_samples(6, 48, 2)
    samples = {"cine_x": x[:0], "cine_y": y[:0], "image_x": x, "image_y": y}
    xb, yb = _batch(np.random.default_rng(0), samples, RefinerTrainConfig(batch=8, image_share=0.3))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8, 1, 32, 32)


def test_batches_mix_the_sources_by_their_shares():
    x, y = _biased_samples(6, 48, 3)
    samples = {"cine_x": x, "cine_y": y, "image_x": x[:2], "image_y": y[:2], "synth_x": x[:3], "synth_y": y[:3]}
    rng = np.random.default_rng(0)
    cfg = RefinerTrainConfig(batch=1000, image_share=0.2, synthetic_share=0.5)
    counts = _source_counts(rng, samples, cfg)
    assert sum(counts.values()) == 1000
    assert abs(counts["synth"] - 500) < 60 and abs(counts["image"] - 200) < 50 and abs(counts["cine"] - 300) < 60
    counts = _source_counts(rng, dict(samples, synth_x=x[:0]), cfg)    # no synthetic crops: the others share
    assert set(counts) == {"cine", "image"} and sum(counts.values()) == 1000
    with pytest.raises(ValueError, match="no training samples"):
        _source_counts(rng, {"cine_x": x[:0], "image_x": x[:0]}, cfg)


def test_inversion_negates_the_frames_not_the_carried_mask():
    x, y = _biased_samples(1, 48, 4)
    xi, yi = _augment(np.random.default_rng(0), x[0].astype(np.float32), y[0], invert=1.0)
    xs, ys = _augment(np.random.default_rng(0), x[0].astype(np.float32), y[0])
    rng = np.random.default_rng(0)
    rng.random()                                           # the inversion's draw, then the same geometry
    xg, yg = _augment(rng, x[0].astype(np.float32), y[0])
    assert np.array_equal(xi[:2], -xg[:2]) and np.array_equal(xi[2], xg[2]) and np.array_equal(yi, yg)
    assert xs.shape == xi.shape and ys.dtype == yi.dtype


def test_synthetic_pairs_change_the_object_and_carry_into_samples():
    rng = np.random.default_rng(0)
    changes = []
    for _ in range(6):
        painted, painted_mask, query, query_mask = shape_change_pair(rng, 96)
        assert painted.shape == query.shape == painted_mask.shape == query_mask.shape == (96, 96)
        assert painted.dtype == np.float32 and painted_mask.dtype == bool and query_mask.dtype == bool
        assert 0 <= query.min() and query.max() <= 1 and query_mask.sum() > 30
        inside, outside = query[query_mask].mean(), query[~query_mask].mean()
        changes.append(abs(int(painted_mask.sum()) - int(query_mask.sum())) / query_mask.sum())
        assert np.isfinite(inside) and np.isfinite(outside)
    assert max(changes) > 0.2                               # the object changes size, not only position
    samples = synthetic_samples(np.random.default_rng(1), 4, 32, size=96, progress=False)
    assert 1 <= len(samples) <= 4 and samples[0][0].shape == (3, 32, 32) and samples[0][1].shape == (32, 32)


def test_the_step_scales_the_correction(shapes, tmp_path):
    """``refine_step``: the carried logit plus this share of the refiner's residual. A refiner with a constant
    residual −4 leaves a carried probability p at sigmoid(logit p − 4·step): nothing changes at step 0, the
    whole correction at 1; the session default takes half (``REFINE_STEP``); outside [0, 1] is refused."""
    from cineprop.session_config import REFINE_STEP, SessionConfig

    frames, labels = shapes
    shift = CarrierRefiner(RefinerConfig(resolution=32))
    torch.nn.init.constant_(shift.out.bias, -4.0)
    torch.nn.init.zeros_(shift.out.weight)
    path = tmp_path / "shift.pt"
    save_checkpoint(path, shift, "refiner")
    refiner = Refiner.load(path)
    field = FlowField(frames, "dis")
    carried = anchored_carry(field, (labels[:, :, 0] == 1).astype(np.float32), 0, 3)
    moved, query = field.moved(0, 3), field.frame(3)
    inside = (carried > 0.05) & (carried < 0.95)
    assert inside.sum() > 10
    logit = np.log(carried[inside] / (1 - carried[inside]))
    for step in (0.0, 0.5, 1.0):
        out = refiner.refine_crop(query, moved, carried, step)
        np.testing.assert_allclose(out[inside], 1 / (1 + np.exp(-(logit - 4 * step))), atol=1e-4)
    assert SessionConfig().refine_step == REFINE_STEP == 0.5
    with pytest.raises(CinepropError, match="refine_step"):
        build_propagator("dis", anchor=True, refine=True, refiner=str(path), refine_step=1.5)


def test_refining_in_batches_equals_one_by_one(shapes, tmp_path):
    """The carrier refines a chain's new masks in batches (``refine_crops``): the same masks, in order, as
    one crop at a time, whatever the batch size; an empty carried mask comes back as it is."""
    frames, labels = shapes
    model = CarrierRefiner(RefinerConfig(resolution=32))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.out.weight, std=2.0)     # a refiner whose residual depends on the crop
    path = tmp_path / "random.pt"
    save_checkpoint(path, model, "refiner")
    refiner = Refiner.load(path)
    field = FlowField(frames, "dis")
    crops = [(field.frame(i), field.moved(0, i), anchored_carry(field, (labels[:, :, 0] == label).astype(np.float32), 0, i))
             for i in range(1, 6) for label in (1, 2)]
    crops.insert(3, (field.frame(2), field.frame(0), np.zeros(frames.shape[:2], np.float32)))
    one_by_one = [refiner.refine_crop(*crop, 0.5) for crop in crops]
    assert max(np.abs(a - c[2]).max() for a, c in zip(one_by_one, crops)) > 0.05      # it does change masks
    for batch in (1, 4, 64):
        batched = refiner.refine_crops(crops, 0.5, batch=batch)
        assert batched[3] is crops[3][2]
        for a, b in zip(one_by_one, batched):
            np.testing.assert_allclose(a, b, atol=1e-5)
