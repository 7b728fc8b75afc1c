#!/usr/bin/env python
"""Benchmark the app's train tasks through HTTP on the bundled sample studies.

    PYTHONPATH=lib .venv/bin/python bench/bench_train.py --checkpoint CKPT [--relearn-steps 20]
                                                           [--image-steps 20] [--out bench.json]

Starts a real server (``tests/servers.py``) on a temporary copy of the app and of ``data/sample``
(three ACDC cines, each with a 2-shot ``middle`` support saved under tag ``support``), with
``--conf method model --conf checkpoint CKPT`` (default: the bundled checkpoint). Submits each
cine's ground truth as its ``final`` label (``PUT /datastore/label?tag=final``), then runs
``cineprop_relearn`` and ``cineprop_image`` in turn (``POST /train/<task>`` until ``GET /train/``
says DONE). Reports per task: wall seconds from the request to DONE, seconds inside the task (its
stats), the difference (MONAI Label's subprocess rebuilding the app), seconds per step, whether it
published, and the infer latency before and after. Prints a Markdown table and the command.
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
from servers import SAMPLE, copy_app, prepare_sample_studies, start_server, wait_for_training  # noqa: E402


def infer_seconds(server, image_id: str) -> float:
    """Server-side seconds of one inference from the saved support (``latencies.total``)."""
    r = requests.post(f"{server.url}/infer/cineprop", params={"image": image_id, "output": "json"},
                      files={"params": (None, "{}")}, timeout=600)
    r.raise_for_status()
    return float(r.json()["latencies"]["total"])


def run_task(server, task: str, params: dict) -> dict:
    start = time.perf_counter()
    r = requests.post(f"{server.url}/train/{task}", json=params, timeout=120)
    r.raise_for_status()
    record = wait_for_training(server, timeout=3600)
    wall = time.perf_counter() - start
    if record["status"] != "DONE":
        raise SystemExit(f"{task} ended {record['status']}:\n" + "\n".join(record.get("details") or []))
    stats = requests.get(server.url + "/info/", timeout=60).json()["train_stats"][task]
    steps = int(stats["steps"] if task == "cineprop_relearn" else stats["config"]["steps"])
    return {"task": task, "params": params, "wall_s": round(wall, 1), "task_s": stats["seconds"],
            "overhead_s": round(wall - stats["seconds"], 1), "steps": steps,
            "s_per_step": round(stats["seconds"] / steps, 2), "published": stats["published"],
            "decision": stats.get("decision", "")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="image checkpoint to serve (default: bundled)")
    parser.add_argument("--relearn-steps", type=int, default=20)
    parser.add_argument("--image-steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="also write the results as JSON")
    args = parser.parse_args()
    conf = {"method": "model", "preload": "true"}
    if args.checkpoint:
        conf["checkpoint"] = str(Path(args.checkpoint).resolve())
    with tempfile.TemporaryDirectory(prefix="cineprop-bench-train-") as tmp:
        root = Path(tmp)
        ids = prepare_sample_studies(root / "studies")
        app_dir = copy_app(root / "app")
        server = start_server(root / "studies", conf=conf, log_path=root / "server.log", app_dir=app_dir)
        try:
            for image_id in ids:
                with open(SAMPLE / f"{image_id}_label.nii.gz", "rb") as f:
                    requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                                 files={"label": (f"{image_id}.nii.gz", f)}, timeout=60).raise_for_status()
            before = infer_seconds(server, ids[0])
            rows = [run_task(server, "cineprop_relearn", {"steps": args.relearn_steps})]
            rows[-1]["infer_after_s"] = infer_seconds(server, ids[0])
            rows.append(run_task(server, "cineprop_image", {"steps": args.image_steps}))
            rows[-1]["infer_after_s"] = infer_seconds(server, ids[0])
        except BaseException:
            print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            server.stop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, load average {load:.1f}, server start "
          f"{server.started_in:.1f} s, infer before training {before:.2f} s")
    print("| task | steps | wall, request → DONE (s) | inside the task (s) | app rebuild etc. (s) | s/step | "
          "published | infer after (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['steps']} | {r['wall_s']} | {r['task_s']} | {r['overhead_s']} | {r['s_per_step']} | "
              f"{'yes' if r['published'] else 'no'} | {r['infer_after_s']:.2f} |")
    for r in rows:
        if r["decision"]:
            print(f"{r['task']}: {r['decision']}")
    print("command: PYTHONPATH=$PWD/lib .venv/bin/python bench/bench_train.py " + " ".join(sys.argv[1:]))
    if args.out:
        Path(args.out).write_text(json.dumps({"before_infer_s": before, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
