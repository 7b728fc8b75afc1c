"""Choose the session's ``absent_above`` on the tuning sets: the default method runs once per cine with
the presence check off, the check judges every query label-frame, and thresholds are applied offline.

    python tools/tune_presence.py --cases DIR [--split-file CSV] [--split val|all] [--presence PT]
                                  [--support first] [--shots 1] [--thresholds 0.3 0.4 0.5 0.6 0.7 0.8 0.9]
                                  [--labels L ...] [--match-below 0.4 0.6 ...] [--outward]
                                  [--end-thresholds 0.3 0.5 ...]

``--cases``: a folder of ``ID.nii.gz`` + ``ID_label.nii.gz`` (ACDC ``sequences`` with its
``splits.csv``, or the smooth-motion tuning set of ``tools/make_smooth_set.py --tuning``; ``--split
all``: every cine). The session blends an emptied carried mask 0.9 : 0.1 with the network, so the
frame's mask is empty: where the structure is absent from the truth the frame is then no longer
scored (``cineprop.metrics.score_label`` scores a frame only if the prediction or the truth has the
label), where it is present it scores 0. Per threshold: how many label-frames are emptied (absent /
present in the truth) and the mean Dice over the scored label-frames (as ``tools/absent_frames.py``
averages it), against the default without the check. ``--match-below M``: also with the check
acting only on label-frames whose registration match with the painted frame
(:func:`cineprop.flow.registration_match`, what the carrier computed) is below ``M``;
``--outward``: also with the carrier's ``absent_outward`` rule (only runs of emptied frames that
reach the cine's end beyond the painted frames); ``--labels``: judge only these structures (a
held-out check on the structure it never saw); ``--end-thresholds``: also with a lower threshold
on the cine's first and last frame (a slice stack's end prior, probed and not kept: no carrier takes
it; docs/benchmarks.md, "Where the structure ends"); ``--shots``: painted frames per structure. The tuning
sets are half of the choice: checks trained with one structure held out, judged on it (with
``--labels`` here, or ``cineprop evaluate --method dis --option anchor=true --option absent_above=T
--option presence=PT --labels L``), are the other (docs/benchmarks.md, "The presence check on
structures it never saw" and "The presence check, only outward").
"""

from __future__ import annotations

import argparse
import math
from typing import NamedTuple

import numpy as np
import torch

from cineprop.baselines import DisPropagator
from cineprop.evaluate import find_cases
from cineprop.io import load_labelled_cine
from cineprop.methods import build_propagator
from cineprop.metrics import dice
from cineprop.refine import Presence
from cineprop.session_config import SessionConfig
from cineprop.support import nearest, outward_runs, query_frames, select_support

THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
#: the session carrier's settings without the check (it judges what that carrier carries, refined or not)
CARRIER = {**SessionConfig().carrier_options(), "absent_above": 1.0}


class Judged(NamedTuple):
    """One query label-frame as the check judged it."""

    p: float                      # the check's absent probability
    absent: bool                  # the structure is absent from the truth
    predicted: bool               # the default without the check predicts it
    dice: float                   # that prediction's Dice
    match: float                  # the carrier's registration match there
    task: int                     # its (cine, label) number
    frame: int
    painted: tuple[int, ...]      # the label's painted frames
    frames: int                   # the cine's frame count


def column(rows: list[Judged], name: str) -> np.ndarray:
    return np.array([getattr(row, name) for row in rows])


def judge(cases, support: str, presence: Presence, labels=None, shots: int = 1) -> list[Judged]:
    """Every query label-frame of ``cases`` (:class:`Judged`)."""
    model = build_propagator("model", options={"absent_above": "1"})
    rows, task = [], 0
    for case in cases:
        for cine, truth in load_labelled_cine(case.image, case.label)[1]:
            chosen = select_support(truth, support, shots, labels)
            default = model.propagate(cine, chosen)
            field = DisPropagator().make_field(cine.frames)
            carried = DisPropagator(field, **CARRIER).propagate(cine, chosen)
            for label in chosen.labels:
                frames, queries = chosen.frames_of(label), query_frames(chosen, label)
                crops = [(field.frame(i), field.moved(nearest(frames, i), i), carried.probabilities[label][:, :, i])
                         for i in queries]
                match = carried.details["match"][label]
                for i, p in zip(queries, presence.absent_probabilities(crops)):
                    gone, pred = truth[:, :, i] == label, default.labels[:, :, i] == label
                    rows.append(Judged(float(p), not gone.any(), bool(pred.any()), dice(pred, gone), float(match[i]),
                                       task, i, tuple(frames), cine.num_frames))
                task += 1
        print(f"{case.id}: {len(rows)} label-frames", flush=True)
    return rows


def outward(on: np.ndarray, rows: list[Judged]) -> np.ndarray:
    """``on`` (the label-frames the check would empty) kept only where the carrier's ``absent_outward``
    rule keeps them (:func:`cineprop.support.outward_runs`, per cine and label)."""
    tasks: dict[int, list[int]] = {}
    for k, row in enumerate(rows):
        tasks.setdefault(row.task, []).append(k)
    out = np.zeros_like(on)
    for ks in tasks.values():
        first = rows[ks[0]]
        kept = set(outward_runs([rows[k].frame for k in ks if on[k]], first.painted, first.frames))
        out[ks] = [rows[k].frame in kept for k in ks]
    return out


def scored_mean(absent: np.ndarray, predicted: np.ndarray, dice_: np.ndarray) -> float:
    """Mean Dice over the label-frames :func:`cineprop.metrics.score_label` scores (label in the
    prediction or the truth)."""
    scored = predicted | ~absent
    return float(dice_[scored].mean())


def at_end(rows: list[Judged]) -> np.ndarray:
    """Where the label-frame is the cine's first or last frame (``--end-thresholds``)."""
    return np.array([row.frame in (0, row.frames - 1) for row in rows])


def print_table(rows: list[Judged], base: float, thresholds, gates, with_outward: bool, ends=(None,)) -> None:
    """Per rule (every frame; with ``with_outward`` also outward runs only), gate (none, then each of
    ``gates``), threshold and threshold on the cine's first and last frame (each of ``ends`` below it;
    ``None``: the same): emptied label-frames, of them absent / present, and the mean Dice."""
    p, absent, predicted, before, match = (column(rows, name) for name in ("p", "absent", "predicted", "dice", "match"))
    end = at_end(rows)
    print("| absent_above | at the ends | match below | outward | emptied | of them absent | present (their Dice) "
          "| mean Dice | change |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rule in [False, True] if with_outward else [False]:
        for gate in [math.inf] + list(gates):               # inf: no gate (absent_below_match=inf)
            for t in thresholds:
                for te in sorted({t if e is None else min(e, t) for e in ends}, reverse=True):
                    on = (p > np.where(end, te, t)) & (match < gate)
                    on = outward(on, rows) if rule else on
                    mean = scored_mean(absent, predicted & ~on, np.where(on, 0.0, before))
                    lost = f"{before[on & ~absent].mean():.2f}" if (on & ~absent).any() else "–"
                    gated = "–" if gate == math.inf else f"{gate:g}"
                    print(f"| {t:g} | {te:g} | {gated} | {'yes' if rule else '–'} | {int(on.sum())} "
                          f"| {int((on & absent).sum())} | {int((on & ~absent).sum())} ({lost}) "
                          f"| {mean:.4f} | {mean - base:+.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True)
    parser.add_argument("--split-file", default=None, help="default: CASES/../splits.csv, else CASES/splits.csv")
    parser.add_argument("--split", default="val", help="a split of the CSV, or 'all'")
    parser.add_argument("--presence", default=None, help="presence checkpoint (default: the bundled one)")
    parser.add_argument("--support", default="first", choices=["first", "middle"])
    parser.add_argument("--shots", type=int, default=1, help="painted frames per structure")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    parser.add_argument("--labels", type=int, nargs="+", default=None, help="judge only these structures")
    parser.add_argument("--match-below", type=float, nargs="+", default=[],
                        help="also gate the check by the registration match (a table per value)")
    parser.add_argument("--end-thresholds", type=float, nargs="+", default=[],
                        help="also these thresholds on the cine's first and last frame (a slice stack's end prior)")
    parser.add_argument("--outward", action="store_true",
                        help="also each row with the absent_outward rule (emptied runs must reach the cine's end)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = find_cases(args.cases, args.split_file, None if args.split == "all" else args.split)
    rows = judge(cases, args.support, Presence.load(args.presence), args.labels, args.shots)
    absent, predicted, before = (column(rows, name) for name in ("absent", "predicted", "dice"))
    base = scored_mean(absent, predicted, before)
    print(f"\n{len(rows)} query label-frames, {int(absent.sum())} with the structure absent; mean Dice of the "
          f"default without the check over the scored ones {base:.4f}\n")
    print_table(rows, base, args.thresholds, args.match_below, args.outward, [None] + args.end_thresholds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
