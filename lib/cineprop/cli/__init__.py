"""The ``cineprop`` command: one verb per module in this package.

Each verb module defines ``add_parser(subparsers)`` (which sets ``func``) and imports its heavy
dependencies inside ``run`` so ``cineprop --help`` stays fast. User errors
(:class:`cineprop.errors.CinepropError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from typing import Sequence

from cineprop.errors import CinepropError

#: Verb modules under ``cineprop.cli``, in the order ``--help`` lists them.
VERBS = ["predict", "evaluate", "simulate", "bench", "batch", "convert", "train-image", "train-refiner", "train-presence",
         "finetune", "relearn"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cineprop",
        description="Few-shot segmentation of cines: paint a few frames, propagate to the rest.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        importlib.import_module(f"cineprop.cli.{verb.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "cineprop " + shlex.join(argv)
    try:
        return int(args.func(args) or 0)
    except CinepropError as exc:
        print(f"cineprop {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cineprop {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
