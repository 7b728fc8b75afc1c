"""Does the frame confidence guide review? Its precision/recall curve, and a threshold chosen on val.

    python tools/confidence_curve.py --val runs/val_first.json --test runs/test_first.json \\
        [--method model] [--bad 0.7] [--max-flag-rate 0.3] [--plot docs/images/confidence_curve.png]

Reads ``cineprop evaluate --out`` reports (one method each, or the ``reports`` list of a multi-method
run, filtered by ``--method``). On ``val``: the threshold with the highest recall of bad frames
(some label's Dice < ``--bad``) whose flag rate stays within ``--max-flag-rate``. On ``test``: what
that threshold gives. Prints a markdown table (with the share of bad query frames) and optionally
saves the curve as a PNG.
"""

from __future__ import annotations

import argparse
import json
import math

from cineprop.metrics import confidence_curve


def _report(path: str, method: str | None) -> dict:
    data = json.load(open(path))
    reports = data["reports"] if "reports" in data else [data]
    chosen = [r for r in reports if method is None or r["method"] == method]
    if not chosen:
        raise SystemExit(f"{path}: no report of method {method!r}")
    return chosen[0]


def choose_threshold(curve: list[dict], max_flag_rate: float) -> dict:
    """The point with the best recall among those flagging at most ``max_flag_rate`` of the frames."""
    allowed = [p for p in curve if not math.isnan(p["flag_rate"]) and p["flag_rate"] <= max_flag_rate]
    return max(allowed, key=lambda p: (p["recall"], -p["flag_rate"]))


def _plot(curves: dict[str, list[dict]], chosen: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, curve in curves.items():
        ax.plot([p["flag_rate"] for p in curve], [p["recall"] for p in curve], marker=".", label=name)
        at = min(curve, key=lambda p: abs(p["threshold"] - chosen))
        ax.scatter([at["flag_rate"]], [at["recall"]], s=60, zorder=3)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random flags")
    ax.set_xlabel("flagged fraction of query frames")
    ax.set_ylabel("recall of bad frames")
    ax.set_title(f"frame confidence, threshold {chosen:.2f} (chosen on val)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--val", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--method", default=None)
    p.add_argument("--bad", type=float, default=0.7, help="a frame is bad when some label's Dice is below this")
    p.add_argument("--max-flag-rate", type=float, default=0.3)
    p.add_argument("--plot", default=None)
    args = p.parse_args()
    curves = {split: confidence_curve(_report(path, args.method)["per_sequence"], args.bad)
              for split, path in (("val", args.val), ("test", args.test))}
    pick = choose_threshold(curves["val"], args.max_flag_rate)
    test = min(curves["test"], key=lambda q: abs(q["threshold"] - pick["threshold"]))
    print("| split | bad frames | threshold | flag rate | recall (Dice < %g) | precision |\n|---|---|---|---|---|---|"
          % args.bad)
    for split, point in (("val", pick), ("test", test)):
        # everything flagged: the precision is the share of bad query frames, the best recall within
        # a flag budget b is b / that share
        bad = confidence_curve(_report(getattr(args, split), args.method)["per_sequence"], args.bad, [math.inf])
        print(f"| {split} | {bad[0]['precision']:.3f} | {point['threshold']:.2f} | {point['flag_rate']:.2f} | "
              f"{point['recall']:.2f} | {point['precision']:.2f} |")
    if args.plot:
        _plot(curves, pick["threshold"], args.plot)


if __name__ == "__main__":
    main()
