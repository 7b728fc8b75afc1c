#!/usr/bin/env python
"""Load benchmark of the MONAI Label server: N concurrent infers plus a background task, /info probed.

    PYTHONPATH=$PWD/lib .venv/bin/python bench/bench_load.py [--studies 8] [--size 256] [--frames 30]
        [--method flow] [--infer-threads 1] [--no-background] [--out load.json]

Starts a real server on 127.0.0.1 (``tests/servers.py``) on a temporary folder of ``--studies``
synthetic cines (``moving_shapes``, SIZE×SIZE×FRAMES, support painted on frame 0 and saved), then
runs ``tests/load.py``: the infers one after the other (reference), then all at once from as many
client threads while the background task runs (the app's first train task, else a batch infer of
every study) and ``GET /info/`` is probed every 0.1 s on a new connection. Prints a Markdown table
(throughput, latency percentiles, /info latency during the concurrent infers) and the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from load import run_load, summary  # noqa: E402
from servers import start_server, synthetic_study  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=8, help="concurrent infers (one study each)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--method", default="flow")
    parser.add_argument("--infer-threads", type=int, default=1, help="--conf infer_threads of the server")
    parser.add_argument("--no-background", action="store_true", help="no train/batch task during the infers")
    parser.add_argument("--out", type=Path, help="write the summary JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cineprop-load-") as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        supports = [(f"load{i}", synthetic_study(studies, f"load{i}", args.size, args.size, args.frames,
                                                 support_frames=(0,), seed=i)) for i in range(args.studies)]
        conf = {"method": args.method, "infer_threads": str(args.infer_threads)}
        server = start_server(studies, conf=conf, log_path=Path(tmp) / "server.log")
        try:
            for image_id, support in supports:
                requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "support"},
                             files={"label": (support.name, support.read_bytes())}, timeout=60).raise_for_status()
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            s = summary(run_load(server.url, supports, background=not args.no_background))
            s["wall_seconds"] = round(time.perf_counter() - start, 2)
            s["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        finally:
            server.stop()
    s["setup"] = {"studies": args.studies, "shape": [args.size, args.size, args.frames], "method": args.method,
                  "infer_threads": args.infer_threads, "cpus": os.cpu_count(), "python": platform.python_version()}
    print(table(s))
    print(json.dumps(s, indent=1))
    if args.out:
        args.out.write_text(json.dumps(s, indent=1))
    return 0 if s["same_labels_as_sequential"] and s["concurrent"]["statuses"] == [200] else 1


def table(s: dict) -> str:
    seq, conc, info = s["sequential"], s["concurrent"], s["info"]
    lat = info["latency_during_infers"]
    rows = [
        "| pass | infers | wall (s) | infers/s | latency p50 / p90 / max (s) |",
        "|---|---|---|---|---|",
        f"| sequential | {s['infers']} | {seq['seconds']} | {seq['per_second']} | "
        f"{seq['latency']['p50']} / {seq['latency']['p90']} / {seq['latency']['p100']} |",
        f"| concurrent + {s['background']['kind'] or 'nothing'} | {s['infers']} | {conc['seconds']} | "
        f"{conc['per_second']} | {conc['latency']['p50']} / {conc['latency']['p90']} / {conc['latency']['p100']} |",
        "",
        f"`GET /info/` during the concurrent infers: {info['probes_during_infers']} probes, p50 {lat.get('p50')} s, "
        f"p95 {lat.get('p95')} s, p99 {lat.get('p99')} s, max {lat.get('p100')} s; non-200: {info['not_ok']}. "
        f"Labels identical to the sequential pass: {s['same_labels_as_sequential']}. Background "
        f"{s['background']['kind']} {s['background']['name']}: {s['background']['status']} after "
        f"{s['background']['seconds']} s.",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
