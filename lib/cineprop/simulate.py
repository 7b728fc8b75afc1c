"""``cineprop simulate``: how many frames a radiologist paints before every frame is right.

A simulated radiologist starts with one painted frame per label (the ground truth of the frame
:func:`cineprop.support.select_support` picks for ``start``), then loops: propagate; if every frame
of every label has Dice ≥ ``target``, stop; otherwise paint one more frame (its ground truth, all
labels) chosen by the policy, and propagate again through the same
:class:`~cineprop.repropagate.Repropagator` (one session per cine for methods that have one).

Policies (:data:`POLICIES`):

* ``flagged``: the unpainted frame of lowest confidence, the one cineprop's "next flagged" shows.
* ``oracle``: the unpainted frame of lowest Dice (the best any confidence could do, greedily).
* ``uniform``: no review: ``n`` frames spread evenly over the clip (the start frame and ``n − 1``
  others, :func:`~cineprop.support.spread_frames`), ``n = 1, 2, …`` until the target holds; i.e.
  "paint every k-th frame" with ``k`` decreasing. With ``--method copy`` or ``interpolate`` this is
  what radiologists do without a propagation tool.

Scores: per label and frame, the Dice of what the user ends up with, i.e. the propagation with the
painted frames replaced by the painting (:func:`cineprop.metrics.dice`; 1 when both are empty).
A frame is *right* when all its labels reach ``target``; the curve reports mean and worst Dice
after each paint. Wall time: of the first propagation and of each re-propagation.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from cineprop.errors import CinepropError
from cineprop.evaluate import Case
from cineprop.io import Cine, load_labelled_cine
from cineprop.metrics import dice
from cineprop.propagation import Propagation, Propagator
from cineprop.repropagate import Repropagator
from cineprop.support import STRATEGIES, SupportSet, select_support, spread_frames

POLICIES = ("flagged", "oracle", "uniform")


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated radiologist.

    Attributes:
        policy: which frame to paint next (:data:`POLICIES`).
        target: per-frame Dice every label of every frame must reach.
        start: the first painted frame per label, ``first`` or ``middle`` (as ``evaluate --support``).
        max_frames: stop after this many painted frames (``None``: every frame may be painted).
    """

    policy: str = "flagged"
    target: float = 0.85
    start: str = "first"
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise CinepropError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if not 0.0 < self.target <= 1.0:
            raise CinepropError(f"target must be in (0, 1], got {self.target}")
        if self.start not in STRATEGIES:
            raise CinepropError(f"unknown start {self.start!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise CinepropError(f"max_frames must be at least 1, got {self.max_frames}")


def frame_dice(prediction: np.ndarray, truth: np.ndarray, painted: Sequence[int]) -> np.ndarray:
    """``L×T`` Dice per label of ``truth`` and frame; painted frames take the painting (Dice 1).

    Args:
        prediction, truth: ``H×W×T`` integer labels.
        painted: frames whose every label was painted from ``truth``.
    """
    labels = [int(v) for v in np.unique(truth) if v]
    t = truth.shape[2]
    out = np.ones((len(labels), t), np.float32)
    done = set(int(f) for f in painted)
    for slot, label in enumerate(labels):
        for i in range(t):
            if i not in done:
                out[slot, i] = dice(prediction[:, :, i] == label, truth[:, :, i] == label)
    return out


def next_frame(policy: str, result: Propagation, scores: np.ndarray, painted: set[int]) -> int:
    """The frame ``flagged`` (lowest confidence) or ``oracle`` (lowest worst-label Dice) paints next.

    Ties go to the earliest frame. Args: ``scores`` is :func:`frame_dice`'s ``L×T`` array.
    """
    value = result.confidence if policy == "flagged" else scores.min(axis=0)
    candidates = [i for i in range(len(value)) if i not in painted]
    return min(candidates, key=lambda i: (float(value[i]), i))


def uniform_frames(t: int, anchor: int, count: int) -> set[int]:
    """``count`` frames of ``0..t−1`` spread evenly, one of them ``anchor``."""
    return set(spread_frames(list(range(t)), anchor, min(count, t)))


def simulate_cine(propagator: Propagator, cine: Cine, truth: np.ndarray, config: SimulationConfig) -> dict:
    """Run the loop of the module docstring on one cine; returns its ``per_sequence`` record."""
    t = cine.num_frames
    limit = t if config.max_frames is None else min(config.max_frames, t)
    start = set(select_support(truth, config.start).frames)
    anchor, count = min(start), 1
    painted = set(start) if config.policy != "uniform" else start | uniform_frames(t, min(start), 1)
    live = Repropagator(propagator, cine)
    curve, order = [], sorted(painted)
    while True:
        begin = time.perf_counter()
        result = live.propagate(SupportSet.from_labels(truth, sorted(painted)))
        seconds = time.perf_counter() - begin
        scores = frame_dice(result.labels, truth, painted)
        worst = scores.min(axis=0)
        curve.append({"painted": len(painted), "mean_dice": round(float(scores.mean()), 4),
                      "worst_dice": round(float(worst.min()), 4),
                      "frames_below_target": int((worst < config.target).sum()), "seconds": round(seconds, 4)})
        reached = bool(worst.min() >= config.target)
        if reached or len(painted) >= limit:
            break
        if config.policy == "uniform":
            while len(start | uniform_frames(t, anchor, count)) <= len(painted):
                count += 1
            if len(start | uniform_frames(t, anchor, count)) > limit:
                break
            painted = start | uniform_frames(t, anchor, count)
            order = sorted(painted)
        else:
            frame = next_frame(config.policy, result, scores, painted)
            painted.add(frame)
            order.append(frame)
    times = [c["seconds"] for c in curve]
    again = float(np.mean(times[1:])) if len(times) > 1 else None
    return {"id": cine.name, "frames": t, "painted_frames": len(painted), "painted_fraction": len(painted) / t,
            "reached": reached, "painted": order, "curve": curve, "reuses_session": live.reuses_work,
            "first_seconds": round(times[0], 4), "repropagation_seconds": None if again is None else round(again, 4),
            "repropagation_ratio": None if again is None or times[0] <= 0 else round(again / times[0], 4)}


def simulate(cases: Sequence[Case], propagator: Propagator, config: SimulationConfig,
             slice_index: int | None = None, progress: bool = True) -> dict:
    """Simulate every cine of ``cases``; return the report (see :func:`summarise_simulation`)."""
    per_sequence = []
    bar = tqdm(cases, desc=f"simulate {propagator.name} {config.policy}", unit="cine", disable=not progress,
               file=sys.stderr)
    for case in bar:
        _, pairs = load_labelled_cine(case.image, case.label, slice_index)
        for cine, truth in pairs:
            if not truth.any():
                continue  # nothing to paint on this slice position
            per_sequence.append(simulate_cine(propagator, cine, truth, config))
            bar.set_postfix(painted=f"{per_sequence[-1]['painted_fraction']:.2f}")
    if not per_sequence:
        raise CinepropError("no labelled cine to simulate")
    return summarise_simulation(per_sequence, propagator.name, config)


def summarise_simulation(per_sequence: list[dict], method: str, config: SimulationConfig) -> dict:
    """The report: per-cine records plus totals.

    ``painted_frames`` is the mean per cine, ``painted_fraction`` the painted share of all frames
    (cines that missed the target count with what they painted by ``max_frames``), ``reached`` the
    number of cines that reached the target, ``repropagation_ratio`` the mean re-propagation time
    over the mean first propagation time.
    """
    painted = [s["painted_frames"] for s in per_sequence]
    frames = [s["frames"] for s in per_sequence]
    first = [s["first_seconds"] for s in per_sequence]
    again = [s["repropagation_seconds"] for s in per_sequence if s["repropagation_seconds"] is not None]
    return {
        "method": method, **asdict(config), "sequences": len(per_sequence),
        "painted_frames": float(np.mean(painted)), "painted_fraction": float(sum(painted) / sum(frames)),
        "reached": int(sum(s["reached"] for s in per_sequence)),
        "final_mean_dice": float(np.mean([s["curve"][-1]["mean_dice"] for s in per_sequence])),
        "first_seconds": float(np.mean(first)),
        "repropagation_seconds": float(np.mean(again)) if again else None,
        "repropagation_ratio": float(np.mean(again) / np.mean(first)) if again and np.mean(first) > 0 else None,
        "per_sequence": per_sequence,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "date": datetime.datetime.now().isoformat(timespec="seconds")},
    }


def format_simulation(reports: Sequence[dict]) -> str:
    """One row per (method, policy): painted share, cines that reached the target, timing."""
    rows = [f"{'method':>12} {'policy':>8} {'painted %':>9} {'per cine':>8} {'reached':>9} {'dice':>6} "
            f"{'first s':>8} {'again s':>8}"]
    for r in reports:
        again = "n/a" if r["repropagation_seconds"] is None else f"{r['repropagation_seconds']:.3f}"
        rows.append(f"{r['method']:>12} {r['policy']:>8} {100 * r['painted_fraction']:9.1f} "
                    f"{r['painted_frames']:8.1f} {r['reached']:>4}/{r['sequences']:<4} {r['final_mean_dice']:6.3f} "
                    f"{r['first_seconds']:8.3f} {again:>8}")
    return "\n".join(rows)


def save_curves(report: dict, path: str | os.PathLike) -> None:
    """PNG: worst-frame Dice after each paint against the painted share of frames, one line per cine."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from cineprop.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for seq in report["per_sequence"]:
        x = [100.0 * c["painted"] / seq["frames"] for c in seq["curve"]]
        ax.plot(x, [c["worst_dice"] for c in seq["curve"]], lw=0.8, alpha=0.5, color="tab:blue")
    ax.axhline(report["target"], color="tab:red", ls="--", lw=1, label=f"target {report['target']}")
    ax.axvline(100.0 * report["painted_fraction"], color="k", ls=":", lw=1,
               label=f"painted {100 * report['painted_fraction']:.0f}% of frames")
    ax.set(xlabel="frames painted (% of the cine)", ylabel="worst per-frame Dice", ylim=(0, 1.02), xlim=(0, 100),
           title=f"{report['method']}, {report['policy']}: {report['reached']}/{report['sequences']} cines "
                 "reach the target")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
