#!/usr/bin/env python
"""Measure ``cineprop batch``: plain loop vs 1 vs 2 Ray workers, a killed-worker fault test, a Ctrl-C +
resume test, and the numbers cluster sizing rests on.

Every run is the real command (``python -m cineprop batch ...``) in a subprocess; its numbers come from
the ``summary.json`` and ``manifest.csv`` it writes, the process wall time, and the memory of its
processes sampled every 0.2 s. Writes a JSON report and prints Markdown tables (docs/benchmarks.md).

    PYTHONPATH=lib python bench/bench_batch.py --data ../shared/data/acdc/sequences \\
        --split-file ../shared/data/acdc/splits.csv --split test --method flow --out-json bench_batch.json

Supports: ``--supports first`` (default) writes one-shot support volumes (per label, the first frame
where it appears, as :func:`cineprop.support.select_support`) to WORK/support and runs with
``--support-from WORK/support``; ``--supports labels`` uses the ``ID_label`` files as they are
(``--support-from labels``; ACDC labels every frame, so nothing is left to propagate and the run
measures the pipeline alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from cineprop.batch import derived, plan_jobs, read_ids
from cineprop.batch.manifest import read_lines
from cineprop.batch.plan import output_problem
from cineprop.io import load_labelled_cine, read_label, write_label
from cineprop.support import select_support


class ProcessSampler(threading.Thread):
    """Peak RSS and CPU time per process of a process tree (driver, Ray daemons, workers), sampled every 0.2 s."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.seen: dict[int, dict] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    with p.oneshot():
                        rss = p.memory_info().rss / 2 ** 20
                        cpu = sum(p.cpu_times()[:2])
                        name = (p.cmdline() or [p.name()])[0]
                except psutil.Error:
                    continue
                entry = self.seen.setdefault(p.pid, {"name": name, "rss": 0.0, "cpu": 0.0})
                entry.update(name=name, rss=max(entry["rss"], rss), cpu=max(entry["cpu"], cpu))
            time.sleep(0.2)

    def report(self) -> dict:
        workers = [e for e in self.seen.values() if e["name"].startswith("ray::CineWorker")]
        driver = self.seen.get(self.root.pid, {"rss": 0.0, "cpu": 0.0})
        others = [e for pid, e in self.seen.items() if pid != self.root.pid and e not in workers]
        return {"driver_peak_rss_mb": round(driver["rss"], 1),
                "worker_peak_rss_mb": round(max(e["rss"] for e in workers), 1) if workers else None,
                "all_processes_peak_rss_mb": round(sum(e["rss"] for e in self.seen.values()), 1),
                "driver_cpu_seconds": round(driver["cpu"], 2),
                "worker_process_cpu_seconds": round(sum(e["cpu"] for e in workers), 2),
                "ray_daemons_cpu_seconds": round(sum(e["cpu"] for e in others), 2)}


def prepare_supports(data: Path, ids: list[str], folder: Path) -> None:
    """One-shot support volumes: per label, its first labelled frame (the rest of the volume is 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    for cine_id in ids:
        target = folder / f"{cine_id}.nii.gz"
        if target.exists():
            continue
        volume, pairs = load_labelled_cine(data / f"{cine_id}.nii.gz", data / f"{cine_id}_label.nii.gz")
        (cine, truth), = pairs
        support = select_support(truth, "first", 1)
        painted = np.stack([support.label_array(t) for t in range(cine.num_frames)], axis=-1)
        write_label(target, painted, volume)


def run_cli(args: list[str], kill_after: int | None = None, interrupt_after: int | None = None,
            out: Path | None = None) -> dict:
    """Run ``python -m cineprop batch ARGS``. Once ``kill_after`` results are committed, SIGKILL one worker
    process; once ``interrupt_after`` are, send the driver SIGINT (Ctrl-C)."""
    command = [sys.executable, "-m", "cineprop", "batch", *args, "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = ProcessSampler(proc.pid)
    sampler.start()
    killed = interrupted = None
    while proc.poll() is None:
        if out is not None and (kill_after is not None and killed is None
                                or interrupt_after is not None and interrupted is None):
            state = out / ".batch"
            ready = [e for e in read_lines(state / "events.jsonl") if e["event"] == "worker_ready"]
            commits = sum(1 for _ in read_lines(state / "journal.jsonl"))
            at = {"after_results": commits, "at_seconds": round(time.perf_counter() - start, 2)}
            if kill_after is not None and killed is None and len(ready) >= 2 and commits >= kill_after:
                os.kill(ready[0]["pid"], signal.SIGKILL)
                killed = {"pid": ready[0]["pid"], **at}
            if interrupt_after is not None and interrupted is None and commits >= interrupt_after:
                proc.send_signal(signal.SIGINT)
                interrupted = at
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    time.sleep(2)
    left = [e["name"] for pid, e in sampler.seen.items() if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return {"command": "cineprop batch " + " ".join(args), "returncode": proc.returncode,
            "process_wall_seconds": round(wall, 3), "stdout": stdout.strip(), "stderr_tail": stderr.strip()[-800:],
            "killed": killed, "interrupted": interrupted, "processes_left": left, **sampler.report()}


def interrupt_check(args: list[str], out: Path, after: int, jobs, reference: Path) -> dict:
    """Ctrl-C a 2-worker run after ``after`` results, then re-run the same command (resume)."""
    shutil.rmtree(out, ignore_errors=True)
    first = run_cli(args + ["--out", str(out)], interrupt_after=after, out=out)
    rows_after_interrupt = manifest_rows(out)
    second = run_cli(args + ["--out", str(out)], out=out)
    summary = json.loads((out / "summary.json").read_text())
    return {"interrupted_returncode": first["returncode"], "interrupted_at": first["interrupted"],
            "processes_left_after_interrupt": first["processes_left"],
            "manifest_rows_after_interrupt": len(rows_after_interrupt),
            "resume_returncode": second["returncode"], "resume_already_done": summary["already_done"],
            "resume_propagated_now": summary["propagated_now"], "resume_ok": summary["ok"],
            "temporary_files_left": [p.name for p in out.glob(".*.tmp*")],
            "outputs_differing_from_loop": [j.id for j in jobs if not np.array_equal(
                read_label(out / f"{j.id}.nii.gz").array, read_label(reference / f"{j.id}.nii.gz").array)]}


def manifest_rows(out: Path) -> dict[str, dict]:
    with (out / "manifest.csv").open(newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def measure(name: str, args: list[str], out: Path, **kw) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    result = run_cli(args + ["--out", str(out)], out=out, **kw)
    summary = json.loads((out / "summary.json").read_text())
    seconds = [float(r["seconds"]) for r in manifest_rows(out).values() if r["status"] == "ok"]
    record = {"mode": name, **result, "load_average_before": round(load_before, 2),
              **{k: summary.get(k) for k in ("cines", "ok", "failed", "workers", "wall_seconds", "startup_seconds",
                                               "ray_init_seconds", "worker_seconds", "cines_per_second",
                                               "workers_lost", "retried", "adopted", "run")},
              **derived(summary),
              "worker_seconds_p50": round(statistics.median(seconds), 4) if seconds else None,
              "worker_seconds_p95": round(float(np.percentile(seconds, 95)), 4) if seconds else None}
    print(f"{name}: {record['process_wall_seconds']:.1f} s, {record.get('steady_cines_per_second')} cines/s steady",
          file=sys.stderr)
    return record


def fault_checks(out: Path, reference: Path, jobs, run: str) -> dict:
    """After the fault run: every output valid and identical to the loop's; one commit per cine; no temp files."""
    rows = manifest_rows(out)
    invalid = [j.id for j in jobs if output_problem(j)]
    differ = [j.id for j in jobs if not np.array_equal(read_label(out / f"{j.id}.nii.gz").array,
                                                       read_label(reference / f"{j.id}.nii.gz").array)]
    commits = Counter(r["id"] for r in read_lines(out / ".batch" / "journal.jsonl") if r.get("run") == run)
    events = list(read_lines(out / ".batch" / "events.jsonl"))
    return {"manifest_rows": len(rows), "ok_rows": sum(r["status"] == "ok" for r in rows.values()),
            "invalid_outputs": invalid, "outputs_differing_from_loop": differ,
            "cines_committed_more_than_once": sorted(i for i, n in commits.items() if n > 1),
            "cines_committed": len(commits), "temporary_files_left": [p.name for p in out.glob(".*.tmp*")],
            "retried_cines": sorted({e["id"] for e in events if e["event"] == "retry"}),
            "adopted_cines": sorted({e["id"] for e in events if e["event"] == "adopted"}),
            "attempts_over_1": {i: r["attempts"] for i, r in rows.items() if r["attempts"] not in ("", "1")},
            "workers_lost": sum(e["event"] == "worker_lost" for e in events),
            "worker_lost_errors": [e.get("error") for e in events if e["event"] == "worker_lost"]}


def sizing(modes: dict, cines: int = 10_000) -> dict:
    """Worker-hours and hours for ``cines`` on W dedicated-core workers, from one measured Ray worker.

    Per cine a worker costs its CPU time inside ``process`` (what a dedicated core spends) plus the
    measured per-cine scheduling overhead; wall time on this shared machine is given as the pessimistic bound.
    """
    ray1 = modes.get("ray1") or next(iter(modes.values()))
    overhead = max(0.0, ray1.get("overhead_seconds_per_cine", 0.0))
    per_cine = ray1["mean_worker_cpu_seconds_per_cine"] + overhead
    per_cine_wall = ray1["mean_worker_seconds_per_cine"] + overhead
    return {"cines": cines, "basis": "ray1", "cpu_seconds_per_cine": ray1["mean_worker_cpu_seconds_per_cine"],
            "wall_seconds_per_cine": ray1["mean_worker_seconds_per_cine"], "overhead_seconds_per_cine": overhead,
            "p95_worker_seconds": ray1["worker_seconds_p95"], "worker_peak_rss_mb": ray1.get("worker_peak_rss_mb"),
            "worker_hours": round(cines * per_cine / 3600, 3),
            "hours": {str(w): round(cines * per_cine / w / 3600, 3) for w in (1, 16, 64, 256)},
            "hours_at_measured_wall": {str(w): round(cines * per_cine_wall / w / 3600, 3) for w in (1, 16, 64, 256)}}


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    # ../shared/data beside the repository (a worktree under /work/wt/NAME: two levels up)
    shared = next((d / "shared" / "data" / "acdc" for d in (repo.parent, repo.parent.parent)
                   if (d / "shared" / "data" / "acdc").is_dir()), repo.parent / "shared" / "data" / "acdc")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(shared / "sequences"))
    p.add_argument("--split-file", default=str(shared / "splits.csv"))
    p.add_argument("--split", default="test")
    p.add_argument("--method", default="flow")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--supports", default="first", choices=["first", "labels"])
    p.add_argument("--modes", default="loop,ray1,ray2", help="comma list of loop, ray1, ray2")
    p.add_argument("--repeat", type=int, default=1, help="runs per mode (interleaved); the median is reported")
    p.add_argument("--no-fault", action="store_true", help="skip the killed-worker and Ctrl-C runs")
    p.add_argument("--kill-after", type=int, default=10, help="kill a worker once this many cines are committed")
    p.add_argument("--limit", type=int, default=None, help="only the first N ids (a quick try)")
    p.add_argument("--probe", default="400x300x50",
                   help="also measure one worker's peak memory on a synthetic 3-label cine of HxWxT ('' to skip)")
    p.add_argument("--work", default="/tmp/cineprop-bench-batch")
    p.add_argument("--out-json", default=None)
    args = p.parse_args()

    data, work = Path(args.data), Path(args.work)
    ids = read_ids(args.split_file, args.split)[: args.limit]
    if args.supports == "first":
        prepare_supports(data, ids, work / "support")
        support = str(work / "support")
    else:
        support = "labels"
    for path in data.iterdir():  # warm the page cache so no mode pays the cold reads
        if path.name.split(".")[0] in ids or path.name.split("_label")[0] in ids:
            path.read_bytes()
    base = [str(data), "--support-from", support, "--split-file", args.split_file, "--split", args.split,
            "--method", args.method] + (["--limit", str(args.limit)] if args.limit else []) + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    flags = {"loop": ["--local"], "ray1": ["--workers", "1"], "ray2": ["--workers", "2"]}
    report = {"cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "method": args.method,
              "supports": args.supports, "cines": len(ids), "modes": {}}
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):  # interleaved, so drifting background load hits every mode alike
        for mode in args.modes.split(","):
            runs.setdefault(mode, []).append(measure(mode, base + flags[mode], work / mode))
    for mode, results in runs.items():  # the median run by steady throughput; every run's key numbers kept
        ordered = sorted(results, key=lambda r: r.get("steady_cines_per_second") or 0.0)
        report["modes"][mode] = {**ordered[len(ordered) // 2], "repeats": [
            {k: r.get(k) for k in ("process_wall_seconds", "steady_cines_per_second", "overhead_seconds_per_cine",
                                   "mean_worker_cpu_seconds_per_cine", "load_average_before")} for r in results]}
    modes = report["modes"]
    if "loop" in modes:
        for mode in ("ray1", "ray2"):
            if mode in modes:
                r, loop = modes[mode], modes["loop"]
                r["speedup_vs_loop_process_wall"] = round(loop["process_wall_seconds"] / r["process_wall_seconds"], 3)
                r["speedup_vs_loop_steady"] = round(r["steady_cines_per_second"] / loop["steady_cines_per_second"], 3)
                r["extra_seconds_per_cine_vs_loop"] = round(
                    (r["process_wall_seconds"] - loop["process_wall_seconds"]) / len(ids), 4)
    if "ray1" in modes and "ray2" in modes:
        report["ray2_over_ray1_steady"] = round(modes["ray2"]["steady_cines_per_second"]
                                                / modes["ray1"]["steady_cines_per_second"], 3)
    report["sizing"] = sizing(modes)
    if not args.no_fault and "loop" in modes:
        fault = measure("fault", base + ["--workers", "2"], work / "fault", kill_after=args.kill_after)
        jobs = plan_jobs(data, support, work / "fault", ids)
        fault["checks"] = fault_checks(work / "fault", work / "loop", jobs, fault["run"])
        report["fault"] = fault
        report["interrupt"] = interrupt_check(base + ["--workers", "2"], work / "interrupt", args.kill_after,
                                              plan_jobs(data, support, work / "interrupt", ids), work / "loop")
    if args.probe:
        report["memory_probe"] = memory_probe(args.probe, work, args.method, args.checkpoint)
    text = json.dumps(report, indent=1)
    if args.out_json:
        Path(args.out_json).write_text(text + "\n")
    print(text)
    return 0


def memory_probe(size: str, work: Path, method: str, checkpoint: str | None) -> dict:
    """Peak RSS of one worker propagating one synthetic 3-label cine of ``size`` (``HxWxT``), in a fresh process."""
    from cineprop.io import Geometry, Volume, write_image
    from cineprop.synthetic import moving_shapes

    h, w, t = (int(v) for v in size.lower().split("x"))
    folder = work / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    frames, labels = moving_shapes(h, w, t, labels=3, seed=1)
    painted = np.zeros_like(labels)
    painted[:, :, 0] = labels[:, :, 0]
    write_image(folder / "probe.nii.gz", frames, Geometry.identity(3))
    write_label(folder / "probe_label.nii.gz", painted, Volume(frames, Geometry.identity(3)))
    code = ("import json, resource, sys; from cineprop.batch.plan import CineJob; "
            "from cineprop.batch.work import CineWorker, WorkerSpec; from cineprop.methods import method_options; "
            "w = CineWorker(WorkerSpec(sys.argv[1], method_options(sys.argv[1], {'checkpoint': sys.argv[3] or None}))); "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; d = sys.argv[2]; "
            "row = w.process(CineJob('probe', d + '/probe.nii.gz', d + '/probe_label.nii.gz', d + '/out.nii.gz')); "
            "print(json.dumps({'base_mb': base, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
            "'status': row['status'], 'cpu_seconds': row.get('cpu_seconds'), 'error': row.get('error')}))")
    done = subprocess.run([sys.executable, "-c", code, method, str(folder), checkpoint or ""], capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    voxels = h * w * t
    result.update(size=size, labels=3, voxels=voxels,
                  bytes_per_voxel=round((result["peak_mb"] - result["base_mb"]) * 2 ** 20 / voxels, 1))
    return result


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
