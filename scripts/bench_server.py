#!/usr/bin/env python
"""Benchmark the MONAI Label app through HTTP: server start, infer latency, /info during an infer.

    PYTHONPATH=lib .venv/bin/python scripts/bench_server.py [--method flow] [--frames 30] [--size 256]
                                                            [--repeats 5] [--out bench.json]

Starts two real servers on 127.0.0.1 (``tests/servers.py``) on a temporary studies folder holding
one synthetic cine (``cineprop.synthetic.moving_shapes``, 2 structures, SIZE×SIZE×FRAMES, support
painted on frame 0):

* ``blocking``: ``--conf infer_threads 0``, MONAI Label's own infer endpoint;
* ``threaded``: the app's default (inference in a worker thread).

For each: seconds from launch until ``/info/`` answers; infer latency (``POST /infer/cineprop`` with
the support uploaded and a ``.nrrd`` result, as the Slicer client asks; one warm-up, then
``--repeats``, median); ``/info/`` latency when idle and when sent while an inference of a cine
twice as long runs (median of 3), and their ratio. Prints a Markdown table and the command.
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

import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from servers import info_during_infer, info_latency, start_server, synthetic_study  # noqa: E402


def infer_once(server, image_id: str, support: Path) -> tuple[float, float]:
    """One infer through HTTP: (round-trip seconds, the server's own ``latencies.total``)."""
    params = {"result_extension": ".nrrd", "result_dtype": "uint8"}
    start = time.perf_counter()
    with open(support, "rb") as f:
        r = requests.post(f"{server.url}/infer/cineprop", params={"image": image_id},
                          files={"label": (support.name, f), "params": (None, json.dumps(params))}, timeout=600)
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    params_part = MultipartDecoder.from_response(r).parts[0]  # parts: params (JSON), image (the label file)
    return elapsed, float(json.loads(params_part.content)["latencies"]["total"])


def bench(name: str, conf: dict, studies: Path, supports: dict, repeats: int) -> dict:
    server = start_server(studies, conf=conf, log_path=studies.parent / f"{name}.log")
    try:
        out: dict = {"server": name, "conf": conf, "start_s": round(server.started_in, 2)}
        infer_once(server, "cine", supports["cine"])  # warm-up: builds the propagator
        runs = [infer_once(server, "cine", supports["cine"]) for _ in range(repeats)]
        out["infer_http_s"] = round(statistics.median(r[0] for r in runs), 3)
        out["infer_server_s"] = round(statistics.median(r[1] for r in runs), 3)
        out["infer_http_range_s"] = [round(min(r[0] for r in runs), 3), round(max(r[0] for r in runs), 3)]
        idle = [info_latency(server) for _ in range(10)]
        during = [info_during_infer(server, "long_cine", supports["long_cine"]) for _ in range(3)]
        out["info_idle_s"] = round(statistics.median(idle), 4)
        out["info_during_infer_s"] = round(statistics.median(d["info_latency"] for d in during), 4)
        out["long_infer_s"] = round(statistics.median(d["infer_done"] for d in during), 3)
        out["info_ratio"] = round(out["info_during_infer_s"] / out["info_idle_s"], 1)
        return out
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="flow", help="--conf method of the servers (default flow)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cineprop-bench-") as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        supports = {"cine": synthetic_study(studies, "cine", args.size, args.size, args.frames, (0,)),
                    "long_cine": synthetic_study(studies, "long_cine", args.size, args.size, 2 * args.frames,
                                                 (0, 2 * args.frames - 1), seed=2)}
        results = [bench(name, {"method": args.method, **extra}, studies, supports, args.repeats)
                   for name, extra in (("blocking", {"infer_threads": "0"}), ("threaded", {}))]
    command = "PYTHONPATH=lib python scripts/bench_server.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command.strip(), "cpus": os.cpu_count(), "load_avg_1min_at_start": round(load, 2),
              "python": platform.python_version(), "cine": f"{args.size}x{args.size}x{args.frames}",
              "method": args.method, "results": results}
    print(f"\n`{report['command']}` — {report['cpus']} CPUs, load average {load:.1f} at start, "
          f"cine {report['cine']}, method {args.method}\n")
    print("| server | start (s) | infer via HTTP, median (s) [min–max] | infer, server side (s) | /info idle (s) "
          "| /info during infer (s) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['start_s']} | {r['infer_http_s']} [{r['infer_http_range_s'][0]}–"
              f"{r['infer_http_range_s'][1]}] | {r['infer_server_s']} | {r['info_idle_s']} | "
              f"{r['info_during_infer_s']} (infer {r['long_infer_s']}) | {r['info_ratio']}× |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
