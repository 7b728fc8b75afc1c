"""``cineprop evaluate DATA_DIR``: score a method on labelled cines (see :mod:`cineprop.evaluate`)."""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_data_arguments, add_method_arguments, build_methods, labelled_cases


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a propagation method on labelled cines",
                       description="Propagate from ground-truth support frames and score the query frames. "
                                   "DATA_DIR holds ID.nii.gz + ID_label.nii.gz pairs.")
    add_data_arguments(p)
    p.add_argument("--support", default="first", choices=["first", "middle"],
                   help="per label: the first frame where it appears, or the middle one of those frames")
    p.add_argument("--shots", type=int, default=1, help="support frames per label (spread evenly)")
    p.add_argument("--labels", type=int, nargs="+", help="only these label values")
    p.add_argument("--loop", type=int, default=None, metavar="N",
                   help="play each cine forwards and backwards to at least N frames (a long-clip drift test)")
    add_method_arguments(p, several=True)
    p.add_argument("--out", default=None, help="write the JSON report here (several methods: one file, a list)")
    p.add_argument("--overlays", default=None, help="write one PNG contour strip per sequence into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.errors import CinepropError
    from cineprop.evaluate import evaluate, format_comparison, format_table, write_report

    if args.shots < 1:
        raise CinepropError("--shots must be at least 1")
    cases = labelled_cases(args)
    reports = []
    for name, propagator in build_methods(args):
        overlays = args.overlays if len(args.method) == 1 or args.overlays is None else f"{args.overlays}/{name}"
        report = evaluate(cases, propagator, args.support, args.shots, overlays, args.slice, args.labels,
                          progress=not args.quiet, loop=args.loop)
        report["command"] = args.command_line
        print(format_table(report))
        reports.append(report)
    if len(reports) > 1:
        print(format_comparison(reports))
    if args.out:
        write_report(reports[0] if len(reports) == 1 else {"reports": reports}, args.out)
        print(f"report: {args.out}")
    return 0
