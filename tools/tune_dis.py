"""Score DIS settings for the carrier: one ``cineprop evaluate`` run per setting, one table.

Each setting (``NAME=JSON``: OpenCV ``DISOpticalFlow`` setters on top of the MEDIUM preset, e.g.
``fine='{"FinestScale": 0, "PatchSize": 16, "PatchStride": 8}'``) replaces the ``dis`` flow
method's settings (:data:`cineprop.flow.DIS_SETTINGS`) for its run, so ``--method dis --option
anchor=true`` scores the session's carrier alone and ``--method model`` the whole default with that
carrier. ``base='{}'`` is the MEDIUM preset. This is how ``dis_fine`` was chosen (docs/benchmarks.md,
"A finer DIS carrier")::

    S="base={} fine0={\\"FinestScale\\":0}"
    python tools/tune_dis.py --cases ../shared/data/acdc/sequences \\
        --split-file ../shared/data/acdc/splits.csv --split val --settings $S
    python tools/tune_dis.py --cases SMOOTH_TUNE --settings $S
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cineprop.cli import main as cineprop_main
from cineprop.flow import DIS_SETTINGS


def parse_setting(text: str) -> tuple[str, dict]:
    """``NAME=JSON`` → ``(name, setters)``; a clear error for anything else."""
    name, sep, body = text.partition("=")
    try:
        setters = json.loads(body) if sep else None
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the part after '=' is not JSON ({error})") from error
    if not name or not isinstance(setters, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME={{\"Setter\": value, ...}}")
    return name, setters


def score(args: argparse.Namespace, setters: dict, out: Path) -> float:
    """Mean Dice of ``args.method`` with ``dis`` flow computed with ``setters``."""
    saved = DIS_SETTINGS["dis"]
    DIS_SETTINGS["dis"] = setters
    try:
        argv = ["evaluate", args.cases, "--support", args.support, "--shots", str(args.shots), "--quiet",
                "--method", args.method, "--out", str(out)]
        argv += ["--split-file", args.split_file, "--split", args.split] if args.split_file else []
        argv += ["--option", "anchor=true"] if args.method == "dis" else []
        if cineprop_main(argv) != 0:
            raise SystemExit(f"cineprop evaluate failed for {setters}")
    finally:
        DIS_SETTINGS["dis"] = saved
    return json.loads(out.read_text())["mean_dice"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", required=True, help="folder of labelled cines")
    parser.add_argument("--split-file")
    parser.add_argument("--split", default="val")
    parser.add_argument("--support", default="first")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--method", choices=("dis", "model"), default="dis",
                        help="dis: the anchored carrier alone; model: the default session with that carrier")
    parser.add_argument("--settings", nargs="+", type=parse_setting, required=True, metavar="NAME=JSON")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, setters in args.settings:
            rows.append((name, score(args, setters, Path(tmp) / f"{name}.json"), setters))
    print("| setting | mean Dice | DIS setters on MEDIUM |\n|---|---|---|")
    for name, dice, setters in rows:
        print(f"| {name} | {dice:.3f} | `{json.dumps(setters)}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
