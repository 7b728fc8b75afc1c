#!/usr/bin/env python
"""Benchmark re-propagation through HTTP: the second infer of a study, with one more painted frame.

    PYTHONPATH=lib .venv/bin/python bench/bench_repropagation.py [--method model] [--frames 60] [--size 256]
                                                                   [--repeats 3] [--out bench.json]

Starts a real server on 127.0.0.1 (``tests/servers.py``, ``--conf method METHOD``, the app's
default session cache) on a temporary studies folder holding ``--repeats`` synthetic cines
(``cineprop.synthetic.moving_shapes``, 2 structures, SIZE×SIZE×FRAMES, slow drift). Per cine:
infer with frame 0 painted (the first propagation: a new session), then with frames 0 and
FRAMES/2 painted (the correction: the study's live session re-propagates), then with
3·FRAMES/4 painted as well. Timed: the HTTP round trip and the server's ``latencies.propagate``.
The re-propagated labels are checked against a fresh local propagation from the same support.
Prints a Markdown table and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from servers import start_server, synthetic_study  # noqa: E402
from test_app_server import infer  # noqa: E402


def one_study(server, studies: Path, image_id: str, args, seed: int) -> list[dict]:
    """Infer ``image_id`` (already in ``studies``) three times with growing supports; per infer: frames,
    seconds, propagate, reused."""
    from cineprop.io import load_cines, read_label, write_label
    from cineprop.synthetic import moving_shapes

    volume, _ = load_cines(studies / f"{image_id}.nii.gz")
    _, truth = moving_shapes(args.size, args.size, args.frames, labels=2, seed=seed, speed=args.speed)
    rows = []
    for painted in ([0], [0, args.frames // 2], [0, args.frames // 2, 3 * args.frames // 4]):
        labels = np.zeros_like(truth)
        labels[:, :, painted] = truth[:, :, painted]
        support = write_label(studies.parent / f"{image_id}_support{len(painted)}.nii.gz", labels, volume)
        start = time.perf_counter()
        status, info, body = infer(server, image_id, support)
        seconds = time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"infer failed ({status}): {info}\n{server.log_tail()}")
        result = studies.parent / "result.nii.gz"
        result.write_bytes(body)
        rows.append({"painted": painted, "seconds": seconds, "propagate": info["latencies"]["propagate"],
                     "reused": info["cines"][0]["reused_session"],
                     "labels": read_label(result, like=volume).array, "support": labels})
    return rows


def check_equal(rows: list[dict], studies: Path, image_id: str, method: str, options: dict) -> float:
    """Fraction of voxels where the last re-propagation differs from a fresh local propagation
    (``method`` built with ``options``, as the server built it)."""
    from cineprop.io import load_cines
    from cineprop.methods import build_propagator
    from cineprop.support import SupportSet

    _, (cine,) = load_cines(studies / f"{image_id}.nii.gz")
    fresh = build_propagator(method, **options).propagate(cine, SupportSet.from_labels(rows[-1]["support"]))
    return float(np.mean(fresh.labels != rows[-1]["labels"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="model")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--speed", type=float, default=0.25, help="drift of the shapes (pixels per frame at 64²)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flow-method", default=None, help="--conf flow_method of the app (e.g. dis_fine)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    options = {"flow_method": args.flow_method} if args.flow_method else {}   # the server's and the fresh check's
    conf = {"method": args.method, **options}
    with tempfile.TemporaryDirectory(prefix="cineprop-repropagate-") as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        for r in range(args.repeats):          # before the server starts: its datastore lists them at start-up
            synthetic_study(studies, f"cine{r}", args.size, args.size, args.frames, seed=r, speed=args.speed)
        server = start_server(studies, conf=conf, log_path=Path(tmp) / "server.log")
        try:
            runs = [one_study(server, studies, f"cine{r}", args, seed=r) for r in range(args.repeats)]
        finally:
            server.stop()
        differ = [check_equal(rows, studies, f"cine{r}", args.method, options) for r, rows in enumerate(runs)]
    med = {k: [statistics.median(rows[i][k] for rows in runs) for i in range(3)] for k in ("seconds", "propagate")}
    report = {"method": args.method, "conf": conf, "frames": args.frames, "size": args.size, "repeats": args.repeats,
              "http_seconds": med["seconds"], "propagate_seconds": med["propagate"],
              "ratio_http": [s / med["seconds"][0] for s in med["seconds"]],
              "ratio_propagate": [s / med["propagate"][0] for s in med["propagate"]],
              "reused": [[row["reused"] for row in rows] for rows in runs], "max_differing_voxels": max(differ),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    print(f"| infer | painted frames | HTTP s (median of {args.repeats}) | propagate s | × first (HTTP) | "
          "× first (propagate) |\n|---|---|---|---|---|---|")
    for i, name in enumerate(["first", "+1 frame", "+1 more"]):
        print(f"| {name} | {len(runs[0][i]['painted'])} | {med['seconds'][i]:.2f} | {med['propagate'][i]:.2f} | "
              f"{report['ratio_http'][i]:.2f} | {report['ratio_propagate'][i]:.2f} |")
    print(f"reused sessions: {report['reused']}; voxels differing from a fresh session: {max(differ):.2e}")
    print(f"command: {report['command']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
