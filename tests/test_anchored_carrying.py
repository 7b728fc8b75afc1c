"""Anchored carrying (:meth:`cineprop.flow.Field.anchored`): the carried mask does not drift on a long
smooth cine where frame-by-frame warping does; the anchored fields follow the flow convention, are
computed once per (painted frame, frame) for all labels, and the option reaches every carrier."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from cineprop.errors import CinepropError
from cineprop.flow import FlowField, anchored_carry
from cineprop.io import Cine
from cineprop.methods import CarrierOptions, build_propagator, method_options
from cineprop.metrics import score_label
from cineprop.smooth_motion import SmoothMotion, animate
from cineprop.support import query_frames, select_support


def _ring_cine(seed: int, frames: int = 40) -> tuple[Cine, np.ndarray]:
    """A 96² textured image with a 4-pixel-wide ring, animated by the smooth-motion generator
    (periodic affine + elastic motion, noise, dropout frames)."""
    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.random((96, 96)), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    radius = np.hypot(*(np.mgrid[0:96, 0:96] - 48.0))
    ring = (radius > 18) & (radius < 22)
    image = (0.6 * texture + 0.4 * ring).astype(np.float32)
    cine, labels, _ = animate(image, ring.astype(np.uint8), rng, SmoothMotion(frames=frames))
    return Cine(cine, name=f"ring{seed}"), labels


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_anchored_carrying_stops_the_drift_of_warping_frame_by_frame(seed):
    """Measured on these seeds: warp by warp 0.80 / 0.79 / 0.75 Dice, anchored 0.96 / 0.94 / 0.96."""
    cine, labels = _ring_cine(seed)
    support = select_support(labels, "first")
    dice = {}
    for anchor in (False, True):
        result = build_propagator("dis", anchor=anchor).propagate(cine, support)
        dice[anchor] = score_label(result.labels == 1, labels == 1, query_frames(support, 1))["dice"]
        np.testing.assert_array_equal(result.labels[:, :, 0] == 1, labels[:, :, 0] == 1)   # painted frame exact
    assert dice[True] > 0.88 and dice[True] > dice[False] + 0.06, dice


def test_anchored_field_follows_the_flow_convention():
    """Frame ``i`` is frame 0 moved by ``i · (+0.6, −0.4)`` px (dy, dx): ``anchored(0, i)`` brings frame 0
    onto frame ``i``, i.e. ≈ (dx, dy) = ``i · (0.4, −0.6)``, without the error growing along the chain."""
    rng = np.random.default_rng(0)
    first = gaussian_filter(rng.random((80, 80)), 2.5).astype(np.float32)
    frames = np.stack([shift(first, (0.6 * i, -0.4 * i), order=3, mode="nearest") for i in range(16)], axis=-1)
    field = FlowField(frames, "dis")
    for i in (1, 8, 15):
        centre = np.median(field.anchored(0, i)[24:56, 24:56].reshape(-1, 2), axis=0)
        np.testing.assert_allclose(centre, [0.4 * i, -0.6 * i], atol=0.35)
    np.testing.assert_array_equal(field.anchored(7, 7), 0.0)
    backward = np.median(field.anchored(15, 5)[24:56, 24:56].reshape(-1, 2), axis=0)    # from a later frame
    np.testing.assert_allclose(backward, [-4.0, 6.0], atol=0.35)


def test_anchored_fields_are_computed_once_for_every_label():
    """Two labels painted on frame 0 of a 6-frame cine: 5 steps and 5 anchoring registrations in all,
    however many labels and however often the chain is asked again."""
    cine, labels = _ring_cine(2, frames=6)
    labels = labels.copy()
    labels[:, :48][labels[:, :48] == 1] = 2                       # the ring's left half is a second label
    field = FlowField(cine.frames, "dis")
    calls = []
    pair = field.pair
    field.pair = lambda fixed, moving: calls.append(1) or pair(fixed, moving)
    support = select_support(labels, "first")
    assert support.labels == [1, 2]
    carrier = build_propagator("dis", anchor=True)
    carrier._field = field
    first = carrier.propagate(cine, support)
    again = carrier.propagate(cine, support)
    assert len(calls) == 10
    np.testing.assert_array_equal(first.labels, again.labels)


def test_anchored_carry_of_a_still_cine_is_the_painted_mask():
    still = np.repeat(gaussian_filter(np.random.default_rng(1).random((40, 40)), 2.0)[:, :, None], 5, axis=2)
    field = FlowField(still, "dis")
    mask = np.zeros((40, 40), np.float32)
    mask[10:25, 12:30] = 1.0
    np.testing.assert_allclose(anchored_carry(field, mask, 0, 4), mask, atol=1e-4)


def test_the_anchor_option_reaches_every_carrier_and_only_them():
    assert method_options("dis", {"anchor": "yes"}) == CarrierOptions(anchor=True)
    assert method_options("flow", {}) == CarrierOptions(anchor=False)
    assert build_propagator("demons", anchor="true").anchor is True
    assert build_propagator("flow").anchor is False
    with pytest.raises(CinepropError, match=r"unknown copy option\(s\) anchor"):
        method_options("copy", {"anchor": "true"})


@pytest.mark.parametrize("anchor", [False, True])
def test_a_carrier_on_a_session_field_reuses_unchanged_chains_and_forgets_old_paint(anchor):
    """Given a field (as a session gives its own), the carrier keeps carried masks by painted frame and
    mask: results equal a fresh carrier's, a re-propagation warps only the new paint's chains, and the
    masks of paint that is gone are dropped."""
    from cineprop.support import SupportSet

    cine, labels = _ring_cine(4, frames=24)
    paint = lambda frames: SupportSet({1: {f: labels[:, :, f] == 1 for f in frames}}, labels.shape)  # noqa: E731
    carrier = build_propagator("dis", anchor=anchor)
    carrier._field = FlowField(cine.frames, "dis")
    first = carrier.propagate(cine, paint([0]))
    one_paint = carrier.cached_bytes
    assert one_paint == 23 * 96 * 96 * 4                          # frames 1..23 carried from frame 0
    second = carrier.propagate(cine, paint([0, 16]))
    for result, frames in ((first, [0]), (second, [0, 16])):
        fresh = build_propagator("dis", anchor=anchor).propagate(cine, paint(frames))
        np.testing.assert_array_equal(result.probabilities[1], fresh.probabilities[1])
    assert carrier.cached_bytes > one_paint                      # frame 16's chains added
    carrier.propagate(cine, paint([16]))
    assert carrier.cached_bytes == 23 * 96 * 96 * 4              # frame 0's chain forgotten


def test_registration_match_is_high_where_motion_explains_the_frame_and_low_where_content_changed():
    from cineprop.flow import match_band, registration_match

    cine, labels = _ring_cine(0, frames=12)
    frames = cine.frames.copy()
    other = gaussian_filter(np.random.default_rng(9).random(frames.shape[:2]), 2.0)
    frames[:, :, 8:] = \
        ((other - other.min()) / (other.max() - other.min()))[:, :, None]          # new content from frame 8 on
    field = FlowField(frames, "dis")
    ring = (labels[:, :, 0] == 1).astype(np.float32)
    moved = [registration_match(field, 0, i, match_band(ring)) for i in range(12)]
    assert moved[0] == 1.0
    assert min(moved[1:8]) > 0.8 and max(moved[8:]) < 0.5, np.round(moved, 2)
    result = build_propagator("dis", anchor=True)
    result._field = field
    match = result.propagate(Cine(frames), select_support(labels, "first")).details["match"][1]
    assert match.shape == (12,) and match[0] == 1.0
    assert match[1:8].min() > 0.8 and match[8:].max() < 0.65, np.round(match, 2)


def test_between_painted_frames_the_chain_that_matches_leads():
    """``match_weight``: frames 0–5 show one textured image, frames 6–7 another; the structure is
    painted on frame 0 (a square) and frame 7 (a square elsewhere). On frame 4 the chain from frame 0
    matches its frame (the same image) and the chain from frame 7 does not, so with ``match_weight``
    the blend takes frame 0's square, by distance alone (weight 3/7 for frame 0) it takes neither."""
    rng = np.random.default_rng(3)
    one, two = (gaussian_filter(rng.random((64, 64)), 2.0) for _ in range(2))
    frames = np.stack([one] * 6 + [two] * 2, axis=2).astype(np.float32)
    labels = np.zeros((64, 64, 8), np.uint8)
    labels[10:26, 10:26, 0] = 1
    labels[38:54, 38:54, 7] = 1
    cine, support = Cine(frames), select_support(labels, "first", shots=2)
    square = labels[:, :, 0] == 1
    by_distance = build_propagator("dis", anchor=True).propagate(cine, support)
    by_match = build_propagator("dis", anchor=True, match_weight=4).propagate(cine, support)
    from cineprop.metrics import dice

    assert dice(by_match.labels[:, :, 4] == 1, square) > 0.9
    assert dice(by_distance.labels[:, :, 4] == 1, square) < 0.5
    with pytest.raises(CinepropError, match="needs anchor"):
        build_propagator("dis", match_weight=4)
