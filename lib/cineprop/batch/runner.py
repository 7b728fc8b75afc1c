"""``run_batch``: plan a cohort job, skip what is done, propagate the rest (plain loop or Ray), summarise.

The job writes into OUT_DIR (see :mod:`cineprop.batch.plan` for the layout) and can be re-run with
the same command at any time: cines whose output is a valid label volume of the cine's shape and
geometry and whose manifest row (or journal record) says ``ok`` are skipped; everything else
(failed, interrupted, missing, corrupted) is propagated again. Two jobs never write into one
OUT_DIR at once (a lock), and OUT_DIR never mixes results of different methods (``.batch/job.json``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from cineprop.batch.manifest import Manifest, committed, journal_path, log_event
from cineprop.batch.plan import (CineJob, check_identity, output_problem, plan_jobs, remove_stale_temporaries,
                                 state_dir)
from cineprop.batch.work import CineWorker, WorkerSpec
from cineprop.errors import CinepropError, where
from cineprop.io.atomic import atomic_write_text
from cineprop.methods import method_options
from cineprop.propagation import DEFAULT_FLAG_THRESHOLD


@dataclass
class BatchConfig:
    """A batch job (the ``cineprop batch`` arguments).

    Attributes:
        support_from: ``"labels"`` or a folder (see :mod:`cineprop.batch.plan`).
        ids: only these cine ids (in this order); ``limit``: then only the first N.
        workers: Ray workers; ``None`` = one per ``cpus_per_worker`` CPUs of the Ray instance; ``0`` or
            ``local=True``: the plain single-process loop (no Ray).
        retries: extra attempts for a cine whose worker died or hit an unexpected error.
        per_worker: cines in flight per worker (backpressure).
        crash_on: TEST HOOK (see :class:`~cineprop.batch.work.WorkerSpec`); empty in normal use, meant for
            Ray workers (in the plain loop it would end this process).
    """

    data_dir: str
    support_from: str
    out_dir: str
    method: str = "flow"
    options: dict = field(default_factory=dict)
    ids: list[str] | None = None
    limit: int | None = None
    workers: int | None = None
    local: bool = False
    ray_address: str | None = None
    retries: int = 2
    per_worker: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    memory_per_worker_gb: float | None = None
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD
    redo: bool = False
    progress: bool = True
    ship_code: bool = True
    flush_seconds: float = 2.0
    command: str | None = None
    crash_on: dict = field(default_factory=dict)

    @property
    def use_ray(self) -> bool:
        return not self.local and self.workers != 0


@contextlib.contextmanager
def _lock(out_dir: Path) -> Iterator[None]:
    path = state_dir(out_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CinepropError(where(out_dir, "another cineprop batch job is writing here")) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _identity(config: BatchConfig) -> dict:
    support = config.support_from if config.support_from == "labels" else str(Path(config.support_from).resolve())
    return {"method": config.method, "options": {k: str(v) for k, v in sorted(config.options.items()) if v is not None},
            "support_from": support, "data_dir": str(Path(config.data_dir).resolve())}


def _validate(config: BatchConfig) -> None:
    if config.retries < 0 or config.per_worker < 1 or (config.workers is not None and config.workers < 0):
        raise CinepropError("--retries must be ≥ 0, --workers ≥ 0 and per-worker in-flight ≥ 1")
    if config.cpus_per_worker <= 0:
        raise CinepropError("--cpus-per-worker must be > 0")


def _resume(jobs: list[CineJob], manifest: Manifest, state: Path, progress: bool) -> tuple[list[CineJob], int]:
    """Record planning problems; return the cines still to propagate and how many are already done."""
    journal = committed(state)
    todo, done = [], 0
    for job in tqdm(jobs, desc="checking earlier results", unit="cine", file=sys.stderr, leave=False,
                    disable=not progress or len(jobs) < 200):
        if job.problem:
            manifest.record({"id": job.id, "status": job.problem_status, "output": "", "error": job.problem,
                             "attempts": 0})
            continue
        row = manifest.get(job.id)
        earlier = row if row and row["status"] == "ok" else journal.get(job.id)
        if earlier is not None and output_problem(job) is None:
            if row is None or row["status"] != "ok":
                manifest.record(earlier)  # committed before the last manifest flush of an interrupted run
            done += 1
        else:
            todo.append(job)
    return todo, done


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)  # keeps a live progress bar intact


def run_batch(config: BatchConfig, log: Callable[[str], None] = _log) -> dict:
    """Run the job; return the summary (also written to ``OUT_DIR/summary.json``).

    Raises:
        CinepropError: bad arguments, missing folders, OUT_DIR in use or holding another job,
            workers that cannot start (e.g. a bad checkpoint).
    """
    _validate(config)
    t0 = time.perf_counter()
    ids = config.ids
    jobs = plan_jobs(config.data_dir, config.support_from, config.out_dir, ids, config.limit)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = state_dir(out)
    run_id = uuid.uuid4().hex[:12]
    with _lock(out):
        resumed, manifest, todo, already = _open_out_dir(config, jobs, out, state)
        planning_seconds = time.perf_counter() - t0
        log_event(state, "job_start", run=run_id, cines=len(jobs), todo=len(todo), already_done=already,
                  command=config.command, pid=os.getpid())
        if already:
            log(f"resuming: {already} of {len(jobs)} cines already done in {out}")
        spec = WorkerSpec(config.method, method_options(config.method, config.options), config.flag_threshold,
                          threads=max(1, int(config.cpus_per_worker)) if config.use_ray else None,
                          run=run_id, journal=str(journal_path(state)), crash_on=dict(config.crash_on))
        rows = _RowTally(manifest, len(todo), config)
        counts, worker_seconds, on_row, bar = rows.counts, rows.worker_seconds, rows.record, rows.bar
        run_info: dict = {}
        interrupted = True
        t_run = time.perf_counter()
        try:
            if todo:
                if config.use_ray:
                    run_info = _run_ray(config, todo, spec, state, on_row, log)
                else:
                    run_info = _run_local(todo, spec, config.retries, on_row)
            interrupted = False
        finally:
            bar.close()
            wall = time.perf_counter() - t_run
            manifest.flush()
            remove_stale_temporaries(out)
            log_event(state, "job_end", run=run_id, interrupted=interrupted, **dict(counts))
        summary = _summary(config, jobs, manifest, counts, already, wall, worker_seconds, planning_seconds,
                           resumed, run_id)
        summary.update(run_info)
        summary.update(derived(summary))
        summary["failures"] = summary.pop("failures")  # last: the longest entry
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _open_out_dir(config: BatchConfig, jobs: list[CineJob], out: Path, state: Path
                  ) -> tuple[bool, Manifest, list[CineJob], int]:
    """Under the job's lock: check OUT_DIR holds this job (or none), drop it on ``redo``, load the
    manifest, remove stale temporaries; returns (resumed, manifest, jobs to do, jobs already done)."""
    resumed = check_identity(out, _identity(config), config.redo)
    if config.redo:
        for stale in (out / "manifest.csv", journal_path(state)):
            stale.unlink(missing_ok=True)
    manifest = Manifest.load(out / "manifest.csv", config.flush_seconds)
    remove_stale_temporaries(out)
    todo, already = _resume(jobs, manifest, state, config.progress)
    manifest.flush()
    return resumed, manifest, todo, already


class _RowTally:
    """Each finished cine's row: into the manifest, the status counts, the worker seconds (wall, CPU)
    and the progress bar."""

    def __init__(self, manifest: Manifest, total: int, config: BatchConfig):
        self.manifest, self.total = manifest, total
        self.counts: Counter = Counter()
        self.worker_seconds = [0.0, 0.0]  # wall, CPU
        self.bar = tqdm(total=total, desc=f"batch {config.method}", unit="cine", file=sys.stderr,
                        disable=not config.progress, smoothing=0.05)

    def record(self, row: dict) -> None:
        self.manifest.record(row)
        self.counts[row["status"]] += 1
        self.worker_seconds[0] += float(row.get("seconds") or 0.0)
        self.worker_seconds[1] += float(row.get("cpu_seconds") or 0.0)
        self.bar.update(1)
        left = self.total - sum(self.counts.values())
        self.bar.set_postfix_str(f"ok={self.counts['ok']} failed={self.counts['failed']} left={left}", refresh=False)


def _run_local(todo: list[CineJob], spec: WorkerSpec, retries: int, on_row: Callable[[dict], None]) -> dict:
    """The plain loop: one propagator in this process; unexpected errors retried like on Ray."""
    start = time.perf_counter()
    worker = CineWorker(spec)
    startup = time.perf_counter() - start
    for job in todo:
        for attempt in range(1, retries + 2):
            row = worker.process(job, attempt)
            if not (row["status"] == "failed" and row.pop("retry", False)):
                break
        row.pop("retry", None)
        on_row(row)
    return {"mode": "local", "workers": 1, "startup_seconds": round(startup, 3)}


def _run_ray(config: BatchConfig, todo: list[CineJob], spec: WorkerSpec, state: Path,
             on_row: Callable[[dict], None], log: Callable[[str], None]) -> dict:
    from cineprop.batch.cluster import ray_session
    from cineprop.batch.ray_runner import PoolOptions, run_on_ray

    start = time.perf_counter()
    local_cpus = os.cpu_count() or 1
    workers = config.workers
    num_cpus = None
    if not config.ray_address:
        workers = workers or max(1, int(local_cpus // config.cpus_per_worker))
        num_cpus = max(1, int(round(workers * config.cpus_per_worker)))
        if num_cpus > local_cpus:
            log(f"warning: {workers} workers × {config.cpus_per_worker:g} CPUs oversubscribe this machine's "
                f"{local_cpus} CPUs")
    with ray_session(config.ray_address, num_cpus, config.ship_code, log=log) as info:
        init_seconds = time.perf_counter() - start
        workers = workers or max(1, int(info.cpus // config.cpus_per_worker))
        options = PoolOptions(workers, config.per_worker, config.retries, config.cpus_per_worker,
                              config.gpus_per_worker,
                              int(config.memory_per_worker_gb * 1024 ** 3) if config.memory_per_worker_gb else None)

        def adopt(job: CineJob, attempts: int) -> dict | None:
            record = committed(state, spec.run).get(job.id)
            if record is None or output_problem(job) is not None:
                return None
            return {**{k: v for k, v in record.items() if k != "run"}, "attempts": attempts}

        stats = run_on_ray(todo, spec, options, on_row, lambda kind, **i: log_event(state, kind, **i), adopt)
    pool = asdict(stats)
    return {"mode": "ray", "workers": workers, "ray_address": config.ray_address, "ray_cpus": info.cpus,
            "ray_nodes": info.nodes, "dashboard_url": info.dashboard_url, "ray_logs": info.logs,
            "ray_init_seconds": round(init_seconds, 3),
            "startup_seconds": round(init_seconds + (pool.pop("startup_seconds") or 0.0), 3), **pool}


def _summary(config: BatchConfig, jobs: list[CineJob], manifest: Manifest, counts: Counter, already: int,
             wall: float, worker_seconds: list[float], planning_seconds: float, resumed: bool, run_id: str) -> dict:
    done = counts["ok"] + counts["failed"]
    overall = manifest.counts(j.id for j in jobs)
    failures = [{"id": j.id, "error": manifest.rows[j.id]["error"]} for j in jobs
                if manifest.rows.get(j.id, {}).get("status") == "failed"]
    return {
        "command": config.command, "run": run_id, "method": config.method,
        "options": {k: str(v) for k, v in config.options.items() if v is not None},
        "data_dir": config.data_dir, "support_from": config.support_from, "out_dir": config.out_dir,
        "cpu_count": os.cpu_count(), "resumed": resumed,
        "cines": len(jobs), "already_done": already, "propagated_now": done,
        "ok_now": counts["ok"], "failed_now": counts["failed"],
        "ok": overall["ok"], "failed": overall["failed"], "no_support": overall["no_support"],
        "planning_seconds": round(planning_seconds, 3), "wall_seconds": round(wall, 3),
        "worker_seconds": round(worker_seconds[0], 3), "worker_cpu_seconds": round(worker_seconds[1], 3),
        "cines_per_second": round(done / wall, 4) if done and wall > 0 else None,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "failures": failures[:50],
    }


def derived(summary: dict) -> dict:
    """Steady-state numbers from a summary: throughput after startup and the overhead per cine.

    ``overhead_seconds_per_cine`` = (workers × (wall − startup) − Σ worker seconds) / cines: the time a
    worker slot spent per cine outside ``CineWorker.process`` (scheduling, transfer, idle).
    """
    n = summary.get("propagated_now") or 0
    wall, startup = summary.get("wall_seconds") or 0.0, summary.get("startup_seconds") or 0.0
    workers = summary.get("workers") or 1
    steady = wall - startup
    if not n or steady <= 0:
        return {}
    return {"steady_cines_per_second": round(n / steady, 4),
            "overhead_seconds_per_cine": round((workers * steady - summary["worker_seconds"]) / n, 4),
            "mean_worker_seconds_per_cine": round(summary["worker_seconds"] / n, 4),
            "mean_worker_cpu_seconds_per_cine": round(summary.get("worker_cpu_seconds", 0.0) / n, 4)}


def format_summary(summary: dict) -> str:
    """A short human-readable summary."""
    extra = derived(summary)
    lines = [f"cines: {summary['cines']} ({summary['already_done']} already done, {summary['propagated_now']} "
             f"propagated now: {summary['ok_now']} ok, {summary['failed_now']} failed; "
             f"{summary['no_support']} without support)",
             f"mode: {summary.get('mode', '-')}, workers: {summary.get('workers', '-')}, "
             f"wall {summary['wall_seconds']:.1f} s (startup {summary.get('startup_seconds', 0):.1f} s)"]
    if extra:
        lines.append(f"throughput: {summary['cines_per_second']:.2f} cines/s overall, "
                     f"{extra['steady_cines_per_second']:.2f} after startup; worker time "
                     f"{extra['mean_worker_seconds_per_cine']:.3f} s/cine "
                     f"({extra['mean_worker_cpu_seconds_per_cine']:.3f} s CPU), overhead "
                     f"{extra['overhead_seconds_per_cine']:.3f} s/cine")
    if summary.get("workers_lost") or summary.get("retried"):
        lines.append(f"workers lost: {summary.get('workers_lost', 0)}, retries: {summary.get('retried', 0)}, "
                     f"results adopted from the journal: {summary.get('adopted', 0)}")
    for failure in summary["failures"][:10]:
        lines.append(f"failed {failure['id']}: {failure['error']}")
    if len(summary["failures"]) > 10:
        lines.append(f"... {summary['failed'] - 10} more failures in {Path(summary['out_dir']) / 'manifest.csv'}")
    return "\n".join(lines)
