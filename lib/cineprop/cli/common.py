"""Arguments shared by several verbs (method selection, device)."""

from __future__ import annotations

import argparse

from cineprop.methods import available


def add_method_arguments(parser: argparse.ArgumentParser, default: str = "flow") -> None:
    methods = available()
    parser.add_argument("--method", default=default, choices=sorted(methods),
                        help="propagation method: " + "; ".join(f"{k}: {v}" for k, v in methods.items()))
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pt) for learned methods; default: the bundled one")
    parser.add_argument("--device", default=None, help="torch device for learned methods (default: cpu)")


def method_options(args: argparse.Namespace) -> dict:
    return {"checkpoint": args.checkpoint, "device": args.device}
