"""``cineprop bench``: speed (frames/s, ratio to flow) and peak memory (see :mod:`cineprop.bench`)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure propagation speed and peak memory on this machine",
                       description="Time methods on a synthetic cine in one run (frames/s and the ratio to the "
                                   "flow baseline) and the peak memory of a long clip in a fresh process.")
    p.add_argument("--methods", nargs="+", default=["model", "flow"])
    p.add_argument("--size", type=int, default=256, help="frame side in pixels")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--labels", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--long-frames", type=int, default=300, help="frames of the peak-memory clip (0: skip)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=None, help="relearn: optimisation steps per cine")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option, repeatable (given to the methods that take it)")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from cineprop.bench import format_bench, run_bench
    from cineprop.evaluate import jsonable
    from cineprop.io.atomic import atomic_write_text

    from cineprop.cli.common import method_settings

    report = run_bench(args.methods, args.size, args.frames, args.labels, args.repeat, args.long_frames,
                       method_settings(args))
    report["command"] = args.command_line
    print(format_bench(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(jsonable(report), indent=1) + "\n")
    return 0
