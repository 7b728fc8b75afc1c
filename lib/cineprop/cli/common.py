"""Arguments shared by several verbs (method selection, device)."""

from __future__ import annotations

import argparse

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


def method_options(args: argparse.Namespace) -> dict:
    return {"checkpoint": args.checkpoint, "device": args.device}
