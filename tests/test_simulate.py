"""``cineprop simulate``: the paint-review-correct loop on synthetic cines with a known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from servers import tiny_checkpoint

from cineprop.cli import main
from cineprop.errors import CinepropError
from cineprop.io import Cine
from cineprop.methods import build_propagator
from cineprop.simulate import SimulationConfig, frame_dice, simulate_cine
from cineprop.synthetic import moving_shapes


def cine(seed: int, frames: int = 12) -> tuple[Cine, np.ndarray]:
    image, truth = moving_shapes(48, 56, frames, labels=2, seed=seed)
    return Cine(image, name=f"shapes{seed}"), truth


@pytest.mark.parametrize("policy", ["flagged", "oracle", "uniform"])
def test_painting_every_frame_reaches_dice_one(policy):
    image, truth = cine(0)
    record = simulate_cine(build_propagator("copy"), image, truth, SimulationConfig(policy, target=1.0))
    assert record["reached"] and record["curve"][-1]["mean_dice"] == 1.0
    assert record["painted_frames"] == len(set(record["painted"])) <= 12
    assert record["curve"][0]["mean_dice"] < 1.0 and record["curve"][0]["painted"] == 1
    counts = [c["painted"] for c in record["curve"]]
    assert counts == sorted(set(counts))                    # one more painted frame (or more, uniform) per round


@pytest.mark.parametrize("method", ["interpolate", "flow"])
def test_oracle_never_needs_more_paints_than_flagged(method):
    propagator = build_propagator(method)
    paints = {policy: [simulate_cine(propagator, *cine(seed), SimulationConfig(policy, 0.85))["painted_frames"]
                       for seed in range(4)] for policy in ("flagged", "oracle")}
    assert sum(paints["oracle"]) <= sum(paints["flagged"])
    assert all(2 <= n <= 12 for n in paints["oracle"] + paints["flagged"])   # the target needs some paint


@pytest.mark.parametrize("policy", ["flagged", "oracle", "uniform"])
def test_the_loop_stops_at_max_frames(policy):
    image, truth = cine(1)
    record = simulate_cine(build_propagator("copy"), image, truth, SimulationConfig(policy, 1.0, max_frames=3))
    assert not record["reached"] and record["painted_frames"] == 3 and len(record["curve"]) == 3


def test_frame_dice_scores_painted_frames_as_painted():
    truth = np.zeros((8, 8, 3), np.uint8)
    truth[2:6, 2:6, :] = 1
    prediction = np.zeros_like(truth)                      # misses everything
    scores = frame_dice(prediction, truth, painted=[1])
    np.testing.assert_array_equal(scores, [[0.0, 1.0, 0.0]])


def test_bad_settings_are_refused():
    for bad in (dict(policy="random"), dict(target=0.0), dict(start="last"), dict(max_frames=0)):
        with pytest.raises(CinepropError):
            SimulationConfig(**bad)


def test_a_session_method_reuses_one_session_across_paints(tmp_path):
    model = build_propagator("model", checkpoint=str(tiny_checkpoint(tmp_path / "tiny.pt")))
    # target 1.0: no propagation reaches it, so the loop paints until max_frames and re-propagates twice
    record = simulate_cine(model, *cine(2, frames=8), SimulationConfig("flagged", 1.0, max_frames=3))
    assert record["reuses_session"] and len(record["curve"]) == 3
    assert record["repropagation_seconds"] is not None and record["first_seconds"] > 0


def test_cli_report_and_plot(synthetic_files, tmp_path):
    data = synthetic_files[0].parent
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    code = main(["simulate", str(data), "--method", "copy", "interpolate", "--policy", "flagged", "uniform",
                 "--max-frames", "6", "--out", str(out), "--plots", str(plots), "--quiet"])
    assert code == 0
    reports = json.loads(out.read_text())["reports"]
    assert [(r["method"], r["policy"]) for r in reports] == [("copy", "flagged"), ("copy", "uniform"),
                                                            ("interpolate", "flagged"), ("interpolate", "uniform")]
    for r in reports:
        assert {"method", "policy", "target", "painted_frames", "painted_fraction", "reached", "per_sequence"} <= set(r)
        assert 0.0 < r["painted_fraction"] <= 1.0 and r["per_sequence"][0]["frames"] == 10
        assert (plots / f"{r['method']}_{r['policy']}.png").stat().st_size > 1000
    assert main(["simulate", str(data), "--method", "copy", "--target", "1.5", "--out", str(out)]) == 2
