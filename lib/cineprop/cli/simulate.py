"""``cineprop simulate DATA_DIR``: frames a simulated radiologist paints until every frame is right.

See :mod:`cineprop.simulate`.
"""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_data_arguments, add_method_arguments, build_methods, labelled_cases


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="measure the annotation burden: paint, review, correct until every frame "
                                        "is right",
                       description="Start from one painted frame per label, propagate, and paint one more frame "
                                   "(its ground truth) until every frame of every label reaches the target Dice. "
                                   "DATA_DIR holds ID.nii.gz + ID_label.nii.gz pairs.")
    add_data_arguments(p)
    p.add_argument("--policy", nargs="+", default=["flagged"], choices=["flagged", "oracle", "uniform"],
                   help="which frame is painted next: flagged (lowest confidence, what a cineprop user does), "
                        "oracle (lowest Dice), uniform (n frames spread evenly, n = 1, 2, …; with --method copy "
                        "or interpolate: the workflow without propagation); several are run in turn")
    p.add_argument("--target", type=float, default=0.85, help="Dice every label of every frame must reach")
    p.add_argument("--start", default="first", choices=["first", "middle"],
                   help="first painted frame per label: the first frame where it appears, or the middle one")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="give up on a cine after N painted frames (default: every frame may be painted)")
    add_method_arguments(p, several=True)
    p.add_argument("--out", required=True, help="JSON report (several methods or policies: one file, a list)")
    p.add_argument("--plots", default=None, help="write one PNG of Dice-after-each-paint curves per run here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cineprop.evaluate import write_report
    from cineprop.simulate import SimulationConfig, format_simulation, save_curves, simulate

    configs = [SimulationConfig(policy, args.target, args.start, args.max_frames) for policy in args.policy]
    cases = labelled_cases(args)
    reports = []
    for name, propagator in build_methods(args):
        for config in configs:
            report = simulate(cases, propagator, config, args.slice, progress=not args.quiet)
            report["command"] = args.command_line
            reports.append(report)
            if args.plots:
                save_curves(report, Path(args.plots) / f"{name}_{config.policy}.png")
            print(format_simulation(reports[-1:]))
    if len(reports) > 1:
        print(format_simulation(reports))
    write_report(reports[0] if len(reports) == 1 else {"reports": reports}, args.out)
    print(f"report: {args.out}")
    return 0
