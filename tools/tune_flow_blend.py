"""Choose the session's ``flow_weight`` on ACDC val: model and flow run once per cine, blended offline.

    python tools/tune_flow_blend.py CHECKPOINT [SPLIT] [LIMIT] [first|middle]

Prints, per cine and on average, the mean query-frame Dice of ``(1 − w)·model + w·flow`` for
w in 0, 0.2, …, 1 (the model run with ``flow_weight=0``, i.e. the network and its memory alone).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from cineprop.evaluate import find_cases
from cineprop.io.cine import load_labelled_cine
from cineprop.methods import build_propagator
from cineprop.metrics import score_label
from cineprop.support import labels_from_probabilities, query_frames, select_support

WEIGHTS = [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0]


def main(checkpoint: str, split: str = "val", limit: int = 12, strategy: str = "first",
         data: str = "../shared/data/acdc") -> dict[float, float]:
    torch.set_num_threads(1)
    cases = find_cases(f"{data}/sequences", f"{data}/splits.csv", split)[:limit]
    model = build_propagator("model", checkpoint=checkpoint, options={"flow_weight": "0"})
    flow = build_propagator("flow")
    scores: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    for case in cases:
        _, pairs = load_labelled_cine(case.image, case.label, None)
        for cine, truth in pairs:
            support = select_support(truth, strategy, 1, None)
            pm, pf = model.propagate(cine, support), flow.propagate(cine, support)
            for w in WEIGHTS:
                probs = {k: (1 - w) * pm.probabilities[k] + w * pf.probabilities[k] for k in support.labels}
                labels = labels_from_probabilities(probs)
                scores[w].append(float(np.nanmean([score_label(labels == k, truth == k, query_frames(support, k))["dice"]
                                                   for k in support.labels])))
            print(case.id, {w: round(scores[w][-1], 3) for w in WEIGHTS}, flush=True)
    means = {w: round(float(np.mean(v)), 4) for w, v in scores.items()}
    print("mean", means)
    return means


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(args[1:2]), *([int(args[2])] if len(args) > 2 else []), *(args[3:4]))
