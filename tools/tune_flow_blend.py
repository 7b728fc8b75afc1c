"""Choose the session's blend carrier and ``flow_weight`` on ACDC val: the model and each carrier run
once per cine, blended offline.

    python tools/tune_flow_blend.py [--checkpoint PT] [--split val] [--limit 12] [--support first]
                                    [--carriers flow dis] [--cases DIR] [--anchor]

``--cases DIR`` reads the cines of another folder (``DIR/*.nii.gz`` with ``DIR/splits.csv``, e.g. the
smooth-motion tuning set of ``tools/make_smooth_set.py --tuning``); ``--split`` then filters its
splits (``all``: every cine). ``--anchor``: the carriers carry by anchored carrying
(``SessionConfig.anchor_carrier``, :meth:`cineprop.flow.Field.anchored`).

Prints, per cine and on average, the mean query-frame Dice of ``(1 − w)·model + w·carrier`` for
w in 0, 0.2, …, 1 and each carrier (``SessionConfig.flow_method``: flow, dis, demons, syn,
elastix), with the model run with ``flow_weight=0`` (the network and its memory alone), and the
carriers' seconds per frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cineprop.evaluate import find_cases
from cineprop.io import load_labelled_cine
from cineprop.methods import build_propagator
from cineprop.metrics import score_label
from cineprop.support import labels_from_probabilities, query_frames, select_support

WEIGHTS = [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0]


def _dice(probs: dict, truth: np.ndarray, support) -> float:
    labels = labels_from_probabilities(probs)
    return float(np.nanmean([score_label(labels == k, truth == k, query_frames(support, k))["dice"]
                             for k in support.labels]))


def main(checkpoint: str | None = None, split: str = "val", limit: int = 12, strategy: str = "first",
         carriers: tuple[str, ...] = ("flow",), data: str = "../shared/data/acdc",
         cases_dir: str | None = None, anchor: bool = False) -> dict:
    """``{carrier: {weight: mean Dice}}`` over the first ``limit`` cines of ``split``."""
    torch.set_num_threads(1)
    folder = cases_dir or f"{data}/sequences"
    split_file = f"{cases_dir}/splits.csv" if cases_dir else f"{data}/splits.csv"
    cases = find_cases(folder, split_file, None if split == "all" else split)[:limit]
    model = build_propagator("model", checkpoint=checkpoint, options={"flow_weight": "0"})
    peers = {name: build_propagator(name, anchor=anchor) for name in carriers}
    scores = {name: {w: [] for w in WEIGHTS} for name in carriers}
    seconds, frames = dict.fromkeys(carriers, 0.0), 0
    for case in cases:
        _, pairs = load_labelled_cine(case.image, case.label, None)
        for cine, truth in pairs:
            support = select_support(truth, strategy, 1, None)
            pm = model.propagate(cine, support)
            frames += cine.num_frames
            for name, peer in peers.items():
                start = time.perf_counter()
                pc = peer.propagate(cine, support)
                seconds[name] += time.perf_counter() - start
                for w in WEIGHTS:
                    probs = {k: (1 - w) * pm.probabilities[k] + w * pc.probabilities[k] for k in support.labels}
                    scores[name][w].append(_dice(probs, truth, support))
            print(case.id, {name: {w: round(s[w][-1], 3) for w in WEIGHTS} for name, s in scores.items()},
                  flush=True)
    means = {name: {w: round(float(np.mean(v)), 4) for w, v in s.items()} for name, s in scores.items()}
    for name in carriers:
        print(f"mean {name} ({seconds[name] / max(frames, 1):.3f} s/frame):", means[name])
    return means


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled one)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--support", default="first", choices=["first", "middle"])
    parser.add_argument("--carriers", nargs="+", default=["flow"])
    parser.add_argument("--data", default="../shared/data/acdc")
    parser.add_argument("--cases", default=None, help="a folder of cines with splits.csv instead of ACDC")
    parser.add_argument("--anchor", action="store_true", help="anchored carrying (SessionConfig.anchor_carrier)")
    a = parser.parse_args()
    main(a.checkpoint, a.split, a.limit, a.support, tuple(a.carriers), a.data, a.cases, a.anchor)
