#!/usr/bin/env python
"""Benchmark the MONAI Label app through HTTP: server start, infer latency, /info during an infer.

    PYTHONPATH=lib .venv/bin/python bench/bench_server.py [--method flow] [--frames 30] [--size 256]
                                                            [--repeats 5] [--out bench.json]

Starts two real servers on 127.0.0.1 (``tests/servers.py``) on a temporary studies folder holding
one synthetic cine (``cineprop.synthetic.moving_shapes``, 2 structures, SIZE×SIZE×FRAMES, support
painted on frame 0):

* ``blocking``: ``--conf infer_threads 0``, MONAI Label's own infer endpoint;
* ``threaded``: the app's default (inference in a worker thread).

For each: seconds from launch until ``/info/`` answers; infer latency (``POST /infer/cineprop`` with
the support uploaded and a ``.nrrd`` result, as the Slicer client asks; one warm-up, then
``--repeats``); ``/info/`` latency when idle (10) and when sent while an inference of a cine
twice as long runs (3), and their ratio. The two servers are started ``--rounds`` times in turn
and the medians pool every round. Prints a Markdown table and the command.
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
    """Raw measurements of one server start (lists; :func:`summary` takes medians)."""
    server = start_server(studies, conf=conf, log_path=studies.parent / f"{name}.log")
    try:
        infer_once(server, "cine", supports["cine"])  # warm-up: builds the propagator
        runs = [infer_once(server, "cine", supports["cine"]) for _ in range(repeats)]
        idle = [info_latency(server) for _ in range(10)]
        during = [info_during_infer(server, "long_cine", supports["long_cine"]) for _ in range(3)]
        return {"start": [server.started_in], "http": [r[0] for r in runs], "server": [r[1] for r in runs],
                "idle": idle, "during": [d["info_latency"] for d in during],
                "long": [d["infer_done"] for d in during]}
    finally:
        server.stop()


def summary(name: str, conf: dict, raw: dict) -> dict:
    med = {k: statistics.median(v) for k, v in raw.items()}
    return {"server": name, "conf": conf, "starts": len(raw["start"]), "start_s": round(med["start"], 2),
            "infer_http_s": round(med["http"], 3), "infer_server_s": round(med["server"], 3),
            "infer_http_range_s": [round(min(raw["http"]), 3), round(max(raw["http"]), 3)],
            "info_idle_s": round(med["idle"], 4), "info_during_infer_s": round(med["during"], 4),
            "long_infer_s": round(med["long"], 3), "info_ratio": round(med["during"] / med["idle"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="flow", help="--conf method of the servers (default flow)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed infers per server start")
    parser.add_argument("--rounds", type=int, default=2, help="starts of each server, alternating")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cineprop-bench-") as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        supports = {"cine": synthetic_study(studies, "cine", args.size, args.size, args.frames, (0,)),
                    "long_cine": synthetic_study(studies, "long_cine", args.size, args.size, 2 * args.frames,
                                                 (0, 2 * args.frames - 1), seed=2)}
        servers = {"blocking": {"method": args.method, "infer_threads": "0"}, "threaded": {"method": args.method}}
        raw: dict = {name: {} for name in servers}
        for _ in range(args.rounds):  # alternate the servers, so load drifting on a shared machine hits both
            for name, conf in servers.items():
                for key, values in bench(name, conf, studies, supports, args.repeats).items():
                    raw[name].setdefault(key, []).extend(values)
        results = [summary(name, conf, raw[name]) for name, conf in servers.items()]
    command = "PYTHONPATH=lib python bench/bench_server.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command.strip(), "cpus": os.cpu_count(), "load_avg_1min_at_start": round(load, 2),
              "python": platform.python_version(), "cine": f"{args.size}x{args.size}x{args.frames}",
              "method": args.method, "results": results}
    print(f"\n`{report['command']}` — {report['cpus']} CPUs, load average {load:.1f} at start, "
          f"cine {report['cine']}, method {args.method}\n")
    print("| server | start, median (s) | infer via HTTP, median (s) [min–max] | infer, server side (s) "
          "| /info idle (s) | /info during infer (s) | ratio |")
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
