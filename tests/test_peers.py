"""Registration peers (dis, dis_fine, demons, syn, elastix): field convention, each beats copy,
missing-extra errors, and a model session blending with any of them (``flow_method``)."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, shift

from cineprop.errors import CinepropError
from cineprop.io import Cine
from cineprop.methods import build_propagator
from cineprop.metrics import score_label
from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.registration import require
from cineprop.session import PropagationSession, SessionConfig
from cineprop.support import query_frames, select_support
from cineprop.synthetic import moving_shapes


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


HAS_ELASTIX = _installed("itk-elastix")
PEERS = ["dis", "dis_fine", "demons", "syn",
         pytest.param("elastix", marks=pytest.mark.skipif(not HAS_ELASTIX, reason="itk-elastix (extra 'elastix')"))]


def mean_dice(result, labels, support) -> float:
    return float(np.mean([score_label(result.labels == k, labels == k, query_frames(support, k))["dice"]
                          for k in support.labels]))


@pytest.mark.parametrize("name", PEERS)
def test_field_follows_the_flow_convention(name, tmp_path, monkeypatch):
    """A known translation: frame 1 is frame 0 moved by (dy, dx) = (+3, −2), so ``step(1, 0)`` ≈ (dx, dy) = (2, −3).
    No registration file is left in the working directory."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    first = gaussian_filter(rng.random((64, 72)), 2.5).astype(np.float32)
    second = shift(first, (3.0, -2.0), order=1, mode="nearest").astype(np.float32)
    frames = np.stack([first, second], axis=-1)
    propagator = build_propagator(name)
    field = propagator.make_field(frames).step(1, 0)
    assert field.shape == (64, 72, 2) and field.dtype == np.float32
    centre = np.median(field[16:48, 16:56].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(centre, [2.0, -3.0], atol=0.6)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["demons", "syn",
                                  pytest.param("elastix", marks=pytest.mark.skipif(not HAS_ELASTIX,
                                                                                   reason="itk-elastix"))])
def test_registration_repeats_exactly(name):
    """The same pair registered twice gives the same field (seeded, one thread): a peer's numbers in the
    benchmarks, and the convention test above, do not change from run to run. Unseeded SyN (ANTs takes
    seed 0 as "seed from the clock") differed on every call and missed the translation in 1 of 20."""
    rng = np.random.default_rng(1)
    first = gaussian_filter(rng.random((48, 56)), 2.0).astype(np.float32)
    frames = np.stack([first, shift(first, (1.5, 2.0), order=1, mode="nearest").astype(np.float32)], axis=-1)
    fields = [build_propagator(name).make_field(frames).step(1, 0) for _ in range(3)]
    for other in fields[1:]:
        np.testing.assert_array_equal(other, fields[0])


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("strategy", ["first", "middle"])
def test_peer_beats_copy_on_moving_shapes(name, strategy):
    frames, labels = moving_shapes(64, 64, 10, labels=2, seed=1, speed=1.5)
    cine = Cine(frames, name="moving")
    support = select_support(labels, strategy)
    d_copy = mean_dice(build_propagator("copy").propagate(cine, support), labels, support)
    result = build_propagator(name).propagate(cine, support)
    assert mean_dice(result, labels, support) > d_copy + 0.05
    assert result.labels.shape == labels.shape and result.confidence.shape == (10,)
    for label in support.labels:                          # painted frames come back exactly
        for f in support.frames_of(label):
            np.testing.assert_array_equal(result.labels[:, :, f] == label, labels[:, :, f] == label)


def test_dis_fine_follows_a_small_structure_that_dis_blurs():
    """A 6-px square moves 3 px down over a still background: ``dis`` (finest level at half resolution,
    8-px patches) sees under a third of the motion, ``dis_fine`` (full resolution) clearly more."""
    background = gaussian_filter(np.random.default_rng(0).random((96, 96)), 2.0).astype(np.float32)
    first, second = background.copy(), background.copy()
    first[40:46, 40:46] = second[43:49, 40:46] = 1.5
    frames = np.stack([first, second], axis=-1)
    seen = {name: -float(np.median(build_propagator(name).make_field(frames).step(1, 0)[43:49, 40:46, 1]))
            for name in ("dis", "dis_fine")}
    assert seen["dis"] < 1.0 and seen["dis_fine"] > seen["dis"] + 0.5


def test_missing_extra_names_it():
    with pytest.raises(CinepropError, match=r"needs the Python package 'not-there'.*extra 'peers'"):
        require("cineprop_no_such_module", "not-there", "syn")


@pytest.mark.parametrize("carrier", ["flow", "dis", "dis_fine"])
def test_session_blends_with_the_chosen_carrier(carrier):
    torch.manual_seed(0)
    model = FewShotSegmenter(ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1),
                                         decoder=(16, 12, 8))).eval()
    frames, labels = moving_shapes(48, 56, 8, labels=1, seed=5)
    cine, support = Cine(frames), select_support(labels, "first")
    config = SessionConfig().with_options({"flow_method": carrier, "flow_weight": "1"})
    session = PropagationSession(model, cine, config)
    session.set_supports(support)
    # flow_weight 1: the result is exactly the carrier's own propagation
    expected = build_propagator(carrier, **config.carrier_options()).propagate(cine, support).probabilities[1]
    np.testing.assert_allclose(session.propagate().probabilities[1], expected, atol=1e-5)


def test_blended_confidence_is_the_carriers_bounded_by_agreement():
    """With the flow blend, a frame's confidence is the carrier's own confidence bounded by the mean
    of the network–carrier agreement and the anchored registration's match with the painted frame;
    the network's crispness does not enter (on this real cine the old minimum with it differs)."""
    from pathlib import Path

    from cineprop.checkpoints import load_model
    from cineprop.io import load_labelled_cine
    from cineprop.metrics import dice

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    _, [(cine, truth)] = load_labelled_cine(sample / "patient001_frame01.nii.gz",
                                            sample / "patient001_frame01_label.nii.gz")
    support = select_support(truth, "first")
    model, _ = load_model(None, "cpu")
    runs = {}
    for weight in (0.0, SessionConfig().flow_weight):
        session = PropagationSession(model, cine, SessionConfig(flow_weight=weight))
        session.set_supports(support)
        runs[weight] = session.propagate()
    network, result = runs[0.0], runs[SessionConfig().flow_weight]
    carried = build_propagator("dis", **SessionConfig().carrier_options()).propagate(cine, support)
    agreement = np.array([[dice(network.probabilities[k][:, :, i] > 0.5, carried.probabilities[k][:, :, i] > 0.5)
                           for i in range(cine.num_frames)] for k in support.labels])
    match = np.array([np.clip(carried.details["match"][k], 0, 1) for k in support.labels])
    expected = np.minimum(0.5 * (agreement + match), carried.confidence).min(axis=0)
    expected[support.frames] = 1.0
    np.testing.assert_allclose(result.confidence, expected, atol=1e-6)
    assert not np.allclose(result.confidence, np.minimum(expected, network.confidence))   # the rule matters here


def test_session_rejects_an_unknown_carrier():
    model = FewShotSegmenter(ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1),
                                         decoder=(16, 12, 8))).eval()
    frames, labels = moving_shapes(32, 32, 4, labels=1, seed=0)
    session = PropagationSession(model, Cine(frames), SessionConfig(flow_method="magic"))
    session.set_supports(select_support(labels, "first"))
    with pytest.raises(CinepropError, match="unknown flow_method 'magic'"):
        session.propagate()


def test_a_box_needs_an_optical_flow_carrier_both_ways():
    """One rule, named by each caller's setting: a carrier built with ``box=true`` and a session with
    ``flow_box`` both refuse a registration carrier, and name the carriers that take a box."""
    with pytest.raises(CinepropError, match=r"box=true needs an optical-flow carrier \(flow, dis, dis_fine\), "
                                            r"not 'demons'"):
        build_propagator("demons", box=True)
    model = FewShotSegmenter(ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1),
                                         decoder=(16, 12, 8))).eval()
    frames, labels = moving_shapes(32, 32, 4, labels=1, seed=0)
    session = PropagationSession(model, Cine(frames), SessionConfig(flow_method="syn", flow_box=True))
    session.set_supports(select_support(labels, "first"))
    with pytest.raises(CinepropError, match=r"flow_box needs an optical-flow carrier \(flow, dis, dis_fine\), "
                                            r"not 'syn'"):
        session.propagate()
    build_propagator("dis", box=True)   # the carriers it names take one
