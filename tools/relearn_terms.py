"""Why do the label-free relearning terms change nothing? Measure what each term does to the update.

    python tools/relearn_terms.py [--split val] [--limit 4] [--steps 20] [--option KEY=VALUE ...]
                                  [--data ../shared/data/acdc]

Relearns the bundled image model on the first ``--limit`` cines of ``--split`` (first-frame support,
the ``relearn`` defaults unless ``--option`` changes a :class:`~cineprop.relearn.config.RelearnConfig`
field) and, at every step, takes the gradient of each *weighted* loss term ``λ_k·L_k`` on the
trainable parameters separately. Prints, per term, over all steps and cines:

* ``value``: mean unweighted ``L_k``;
* ``|grad|``: mean norm of its weighted gradient, and ``share``: that norm over the sum of all terms'
  norms (how much of the push is this term's);
* ``cos``: mean cosine between its gradient and the total gradient (does it pull the same way?);
* ``at step 0``: the weighted gradient norm of the first step (terms that only pull the student back
  to the teacher, ``L_f`` and ``L_p``, are exactly 0 there: student = teacher).

and, per parameter group, how far relearning moved the weights (``‖θ − θ₀‖ / ‖θ₀‖``).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from cineprop.checkpoints import load_model
from cineprop.evaluate import find_cases
from cineprop.io import load_labelled_cine
from cineprop.relearn.clip_from_stage1 import build_clip, run_stage1
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.relearner import ConsistencyRelearner, parameter_groups, trainable
from cineprop.support import select_support
from cineprop.training.optim import optimiser_step


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def term_gradients(relearner: ConsistencyRelearner, clip, steps: int) -> tuple[dict, dict]:
    """Per step and term: ``(value, weighted gradient norm, cosine with the total)``; and the weight moves."""
    cfg, weights = relearner.config, relearner.weights()
    state = relearner.prepare(clip)
    student = relearner.new_student()
    start = {g: [p.detach().clone() for p in ps] for g, ps in parameter_groups(student).items()}
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    records: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    with trainable(student, cfg.train) as params:
        optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(steps):
            terms = relearner.loss_terms(student, state, rng)
            grads = {k: _flat(torch.autograd.grad(weights[k] * v, params, retain_graph=True, allow_unused=True),
                              params) for k, v in terms.items()}
            total_grad = sum(grads.values())
            for k, g in grads.items():
                cos = float(torch.nn.functional.cosine_similarity(g, total_grad, dim=0)) if g.norm() > 0 else 0.0
                records[k].append((float(terms[k].detach()), float(g.norm()), cos))
            optimiser_step(optimiser, sum(weights[k] * v for k, v in terms.items()), params)
    moved = {}
    for group, params0 in start.items():
        now = parameter_groups(student)[group]
        num = sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(now, params0))
        den = sum(float(q.pow(2).sum()) for q in params0)
        moved[group] = (num / max(den, 1e-12)) ** 0.5
    return records, moved


def main(split: str = "val", limit: int = 4, steps: int = 20, options: dict | None = None,
         data: str = "../shared/data/acdc") -> dict:
    torch.set_num_threads(1)
    config = RelearnConfig().with_options(options or {})
    model, payload = load_model(None, "cpu")
    relearner = ConsistencyRelearner(model, config)
    records: dict[str, list] = defaultdict(list)
    first: dict[str, list] = defaultdict(list)
    moved: dict[str, list] = defaultdict(list)
    for case in find_cases(f"{data}/sequences", f"{data}/splits.csv", split)[:limit]:
        _, pairs = load_labelled_cine(case.image, case.label, None)
        for cine, truth in pairs:
            support = select_support(truth, "first", 1, None)
            session, stage1 = run_stage1(model, cine, support)
            rec, mv = term_gradients(relearner, build_clip(session, stage1, config, training=True), steps)
            for k, v in rec.items():
                records[k].extend(v)
                first[k].append(v[0][1])
            for g, m in mv.items():
                moved[g].append(m)
            print(case.id, {k: round(float(np.mean([r[1] for r in v])), 5) for k, v in rec.items()}, flush=True)
    norms = {k: float(np.mean([r[1] for r in v])) for k, v in records.items()}
    summary = {k: {"weight": relearner.weights()[k], "value": float(np.mean([r[0] for r in v])),
                   "grad": norms[k], "share": norms[k] / max(sum(norms.values()), 1e-12),
                   "cos": float(np.mean([r[2] for r in v])), "grad_step0": float(np.mean(first[k]))}
               for k, v in records.items()}
    print(f"{'term':>5} {'λ':>6} {'value':>9} {'|grad|':>10} {'share':>7} {'cos':>6} {'at step 0':>10}")
    for k, s in summary.items():
        print(f"{k:>5} {s['weight']:>6.2f} {s['value']:>9.5f} {s['grad']:>10.6f} {s['share']:>7.3f} "
              f"{s['cos']:>6.2f} {s['grad_step0']:>10.6f}")
    print("weights moved (‖θ − θ₀‖ / ‖θ₀‖):",
          {g: round(float(np.mean(m)), 5) for g, m in moved.items()})
    return {"terms": summary, "moved": {g: float(np.mean(m)) for g, m in moved.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--option", action="append", default=[], help="RelearnConfig field, KEY=VALUE")
    parser.add_argument("--data", default="../shared/data/acdc")
    a = parser.parse_args()
    main(a.split, a.limit, a.steps, dict(o.split("=", 1) for o in a.option), a.data)
