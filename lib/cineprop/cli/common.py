"""Arguments shared by several verbs (method selection, device, method options)."""

from __future__ import annotations

import argparse
from typing import Sequence

from cineprop.methods import available


def add_method_arguments(parser: argparse.ArgumentParser, default: str = "flow", several: bool = False) -> None:
    methods = available()
    help_text = "; ".join(f"{k}: {v}" for k, v in methods.items())
    if several:
        parser.add_argument("--method", nargs="+", default=[default], choices=sorted(methods),
                            help="one or more propagation methods, measured in the same run: " + help_text)
    else:
        parser.add_argument("--method", default=default, choices=sorted(methods),
                            help="propagation method: " + help_text)
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pt) for learned methods; default: the bundled one")
    parser.add_argument("--device", default=None, help="torch device for learned methods (default: cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="relearn: optimisation steps per cine (default: the relearning config's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a method option, repeatable (relearn: any RelearnConfig field, e.g. lambda_w=0, "
                             "train=tau,head)")


def parse_options(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (values stay strings; the method converts them)."""
    from cineprop.errors import CinepropError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CinepropError(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def method_settings(args: argparse.Namespace) -> dict[str, str]:
    """The method settings given by name: ``--checkpoint``, ``--device``, ``--steps`` and each ``--option``.

    Flags not given are left out; a flag wins over an ``--option`` of the same name. The values stay
    as given: :func:`cineprop.methods.method_options` converts them, once.
    """
    named = {"checkpoint": args.checkpoint, "device": args.device, "steps": getattr(args, "steps", None)}
    return {**parse_options(getattr(args, "option", []) or []), **{k: v for k, v in named.items() if v is not None}}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``DATA_DIR [--split-file CSV --split NAME] [--slice Z] [--limit N]`` (read by :func:`labelled_cases`)."""
    parser.add_argument("data_dir")
    parser.add_argument("--split-file", help="CSV with columns sequence,split")
    parser.add_argument("--split", help="split name to use (e.g. test)")
    parser.add_argument("--slice", type=int, default=None, help="4D inputs: only this slice position")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sequences (quick checks)")


def build_methods(args: argparse.Namespace):
    """``(name, propagator)`` for each ``--method``, built in turn; with several, shared settings
    (``--checkpoint``, ``--option``, …) go only to the methods that take them, and a setting no
    method takes is an error."""
    from cineprop.errors import CinepropError
    from cineprop.methods import accepted_options, build_propagator, method_options

    settings = method_settings(args)
    several = len(args.method) > 1
    if several:
        unused = sorted(set(settings) - set().union(*(accepted_options(name) for name in args.method)))
        if unused:
            raise CinepropError(f"no method of {', '.join(args.method)} takes option(s) {', '.join(unused)}")
    for name in args.method:
        yield name, build_propagator(name, method_options(name, settings, ignore_unknown=several))


def labelled_cases(args: argparse.Namespace) -> list:
    """The labelled cases of ``DATA_DIR`` (``--split-file/--split``), only the first ``--limit``."""
    from cineprop.evaluate import find_cases

    cases = find_cases(args.data_dir, args.split_file, args.split)
    return cases[: args.limit] if args.limit else cases
