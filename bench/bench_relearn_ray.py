#!/usr/bin/env python
"""Seconds per collection-relearning step: one process vs ``--workers N`` Ray Train workers.

Runs the library behind ``cineprop relearn`` in each mode per repeat, interleaved, on the same images
and settings: the single-process loop (``relearn_collection``) with torch's default threads
(``single``) and with one thread (``single-1t``, what each worker gets), and the data-parallel one
(``ray``: ``relearn_distributed``, a private local Ray instance started by the run, N workers of
``--cpus-per-worker`` CPUs, gradients averaged every step). Each from scratch (``--no-resume``).
Per run: the wall time (Ray start included), the relearning loop's own time (rank 0; from the first
image loaded to the last step), the part of it spent loading images and running stage 1, steps, and
cine-steps (one worker's step on one cine; N per step with N workers). Writes a JSON report and
prints a Markdown table (docs/benchmarks.md).

``--fault-test``: instead, runs the real command (``python -m cineprop relearn … --workers N
--max-failures 1``) in a subprocess, SIGKILLs one Ray Train worker process once ``OUT.last.pt`` holds
step ``--kill-after`` or later, lets the run finish, then runs the same command without a kill and
compares the two final checkpoints and histories.

    PYTHONPATH=lib python bench/bench_relearn_ray.py --data ../shared/data/acdc/sequences \\
        --split-file ../shared/data/acdc/splits.csv --split train --limit 4 --checkpoint image.pt \\
        --steps 12 --steps-per-cine 3 --workers 2 --repeat 3 --out-json docs/results/relearn_ray_acdc_2cores.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from cineprop.checkpoints import read_checkpoint
from cineprop.relearn.collection import CollectionJob, relearn_collection
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.distributed import relearn_distributed


def run_once(mode: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / mode / "relearned.pt"
    shutil.rmtree(out.parent, ignore_errors=True)
    config = RelearnConfig(steps=args.steps, seed=args.seed)
    load = os.getloadavg()[0]
    start = time.time()
    threads = torch.get_num_threads()
    job = CollectionJob(data_dir=Path(args.data), out=out, checkpoint=args.checkpoint, config=config, frames="first",
                        shots=1, steps_per_cine=args.steps_per_cine, save_every=args.steps, resume=False,
                        limit=args.limit, split_file=Path(args.split_file) if args.split_file else None,
                        split=args.split)
    if mode.startswith("single"):
        if mode == "single-1t":
            torch.set_num_threads(1)
        try:
            summary = relearn_collection(job, progress=False)
        finally:
            torch.set_num_threads(threads)
    else:
        summary = relearn_distributed(job, args.workers, cpus_per_worker=args.cpus_per_worker, progress=False,
                                      log=lambda line: None)
    wall = time.time() - start
    loop = summary["minutes"] * 60.0
    steps = summary["steps_run"]
    return {"mode": mode, "workers": summary["workers"],
            "threads": 1 if mode == "single-1t" else threads if mode == "single" else args.cpus_per_worker,
            "load_average_before": load, "wall_s": wall, "loop_s": loop,
            "prepare_s": summary["prepare_seconds"], "steps": steps, "cine_steps": steps * summary["workers"],
            "cines_visited": summary["cines_visited"], "loop_s_per_step": loop / steps,
            "loop_s_per_cine_step": loop / (steps * summary["workers"]),
            "train_s_per_step": (loop - summary["prepare_seconds"]) / steps,
            "startup_s": wall - loop, "final_total_loss": summary["final_loss"]["total"]}


def fault_test(args: argparse.Namespace, work: Path) -> dict:
    import subprocess
    import sys

    import psutil

    def command(out: Path) -> list[str]:
        cmd = [sys.executable, "-m", "cineprop", "relearn", args.data, "--out", str(out), "--frames", "first",
               "--steps", str(args.steps), "--steps-per-cine", str(args.steps_per_cine), "--save-every",
               str(args.save_every), "--workers", str(args.workers), "--max-failures", "1", "--quiet", "--no-resume"]
        cmd += ["--limit", str(args.limit)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
        return cmd + (["--split-file", args.split_file, "--split", args.split] if args.split_file else [])

    shutil.rmtree(work / "fault", ignore_errors=True)
    faulty, clean = work / "fault" / "killed.pt", work / "fault" / "clean.pt"
    last = faulty.with_name("killed.last.pt")
    start, killed = time.time(), None
    proc = subprocess.Popen(command(faulty), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if killed is None and last.exists():
            step = read_checkpoint(last)["extra_state"]["step"]
            victims = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if "RayTrainWorker" in " ".join(c.cmdline())]
            if step >= args.kill_after and victims:
                victims[-1].kill()
                killed = {"pid": victims[-1].pid, "saved_step": step, "at_s": time.time() - start}
        time.sleep(0.2)
    out, err = proc.communicate()
    report = {"killed": killed, "returncode": proc.returncode, "wall_s": time.time() - start,
              "stdout_tail": out.strip()[-300:], "stderr_tail": err.strip()[-300:]}
    subprocess.run(command(clean), check=True, capture_output=True)
    a, b = (read_checkpoint(p) for p in (faulty, clean))
    la, lb = (read_checkpoint(p.with_name(p.stem + ".last.pt"))["extra_state"] for p in (faulty, clean))
    report.update(steps=la["step"], identical_weights=all(torch.equal(v, b["state_dict"][k])
                                                          for k, v in a["state_dict"].items()),
                  identical_history=la["history"] == lb["history"])
    print(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file")
    parser.add_argument("--split")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--steps-per-cine", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["single", "single-1t", "ray"],
                        choices=["single", "single-1t", "ray"])
    parser.add_argument("--work", default="runs/bench_relearn_ray")
    parser.add_argument("--fault-test", action="store_true", help="the killed-worker test (see the docstring)")
    parser.add_argument("--kill-after", type=int, default=8, help="--fault-test: kill once this step is saved")
    parser.add_argument("--save-every", type=int, default=4, help="--fault-test: OUT.last.pt every N steps")
    parser.add_argument("--out-json", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    if args.fault_test:
        report = fault_test(args, work)
        if args.out_json:
            Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out_json).write_text(json.dumps({"command": vars(args), "fault_test": report}, indent=2))
        return
    runs = []
    for r in range(args.repeat):
        for mode in args.modes:
            row = run_once(mode, args, work)
            row["repeat"] = r
            runs.append(row)
            print(json.dumps(row), flush=True)
    report = {"command": vars(args), "cpus": os.cpu_count(), "runs": runs}
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(json.dumps(report, indent=2))
    print("\n| mode | threads per process | load avg before | wall (s) | startup (s) | loop s/step "
          "| of which load + stage 1 (s/step) | cine-steps | loop s/cine-step |\n|---|---|---|---|---|---|---|---|---|")
    for row in runs:
        name = "1 process" if row["mode"].startswith("single") else f"Ray Train, {row['workers']} workers"
        print(f"| {name} | {row['threads']:g} | {row['load_average_before']:.1f} | {row['wall_s']:.1f} | "
              f"{row['startup_s']:.1f} | "
              f"{row['loop_s_per_step']:.2f} | {row['prepare_s'] / row['steps']:.2f} | {row['cine_steps']} | "
              f"{row['loop_s_per_cine_step']:.2f} |")


if __name__ == "__main__":
    main()
