"""Running a batch on Ray: a pool of actors, one propagator each, fed with bounded in-flight work.

Scheduling (the driver's loop):

* ``workers`` actors (:class:`~cineprop.batch.work.CineWorker` wrapped by ``ray.remote``), each built
  once with the job's method; each reserves ``cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs,
  ``memory_per_worker`` bytes) so Ray places them on nodes with room.
* Backpressure: at most ``per_worker`` cines in flight per ready actor (one running, one queued so the
  actor never waits for the driver). The driver holds paths and result rows only; workers read and
  write the volumes themselves, so driver and object-store memory stay flat whatever the cohort size.
* Results are consumed as they finish (``ray.wait``), handed to ``on_row``.
* Failures: a row with ``retry`` (an unexpected exception) is resubmitted; a user error is final at
  once. When an actor dies (killed, out of memory, node lost) the cine it was running is charged one
  attempt and resubmitted, the cines queued behind it are resubmitted free, and a cine whose result the
  journal shows committed before the reply was lost is adopted (``adopt``); the slot gets a fresh
  actor (up to ``workers × (retries + 1)`` replacements in all). A cine that used up ``retries + 1``
  attempts is failed with its last error.
  Actors run with ``max_restarts=0``/``max_task_retries=0``: the driver, not Ray, decides what is
  retried, so attempts are counted and bounded.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from cineprop.batch.plan import CineJob
from cineprop.batch.work import CineWorker, WorkerSpec
from cineprop.errors import CinepropError


@dataclass(frozen=True)
class PoolOptions:
    """Size and failure policy of the actor pool (see the module docstring)."""

    workers: int
    per_worker: int = 2
    retries: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    memory_per_worker: int | None = None


@dataclass
class _Slot:
    index: int
    actor: object = None
    ready_ref: object = None
    generation: int = 0
    ready: bool = False
    dead: bool = False
    info: dict = field(default_factory=dict)
    queue: list = field(default_factory=list)  # in-flight refs of the current actor, in submission order


@dataclass
class PoolStats:
    """What happened in the pool (for the summary)."""

    startup_seconds: float | None = None
    workers_ready: int = 0
    workers_lost: int = 0
    retried: int = 0
    adopted: int = 0
    worker_info: list = field(default_factory=list)


def _init_failed(exc: BaseException) -> bool:
    """Whether an actor error comes from its constructor (``actor_init_failed`` since Ray 2.2x; message before)."""
    flag = getattr(exc, "actor_init_failed", None)
    return bool(flag) if flag is not None else "creation task" in str(exc)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def run_on_ray(jobs: list[CineJob], spec: WorkerSpec, options: PoolOptions, on_row: Callable[[dict], None],
               on_event: Callable[..., None] = lambda kind, **info: None,
               adopt: Callable[[CineJob, int], dict | None] = lambda job, attempts: None) -> PoolStats:
    """Propagate ``jobs`` on the current Ray instance; call ``on_row`` with each final manifest row."""
    import ray
    from ray.exceptions import RayActorError, RayError

    started = time.perf_counter()
    actor_class = ray.remote(CineWorker).options(
        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
        memory=options.memory_per_worker, max_restarts=0, max_task_retries=0)
    stats = PoolStats()
    slots = [_Slot(i) for i in range(max(1, options.workers))]
    replacements_left = len(slots) * (options.retries + 1)
    pending: deque[CineJob] = deque(jobs)
    attempts: dict[str, int] = {}
    inflight: dict[object, tuple[_Slot, CineJob]] = {}
    starting: dict[object, tuple[_Slot, int]] = {}
    init_errors: list[str] = []

    def start(slot: _Slot) -> None:
        slot.generation += 1
        slot.actor = actor_class.remote(spec)
        slot.ready, slot.queue = False, []
        slot.ready_ref = slot.actor.ready.remote()
        starting[slot.ready_ref] = (slot, slot.generation)

    def retry(job: CineJob, reason: str) -> None:
        stats.retried += 1
        on_event("retry", id=job.id, attempt=attempts[job.id] + 1, reason=reason)
        pending.appendleft(job)

    def lose(slot: _Slot, error: BaseException) -> None:
        """The actor of ``slot`` died: settle every cine it held, then give the slot a fresh actor.

        An actor runs its cines one at a time in submission order, so of the cines it held, those
        committed in the journal are adopted, the oldest other one is the one it was running (charged
        one attempt) and the rest were only queued (resubmitted without charge).
        """
        nonlocal replacements_left
        stats.workers_lost += 1
        on_event("worker_lost", worker=slot.info.get("worker"), slot=slot.index, error=_last_line(error))
        held = [inflight.pop(ref)[1] for ref in slot.queue if ref in inflight]
        charged = False
        for job in held:
            row = adopt(job, attempts[job.id])
            if row is not None:
                stats.adopted += 1
                on_event("adopted", id=job.id, attempts=attempts[job.id])
                on_row(row)
            elif charged:
                attempts[job.id] -= 1  # never started: this attempt does not count
                pending.appendleft(job)
            else:
                charged = True
                if attempts[job.id] <= options.retries:
                    retry(job, "worker lost")
                else:
                    on_row({"id": job.id, "status": "failed", "attempts": attempts[job.id], "output": job.output,
                            "error": f"worker lost on each of {attempts[job.id]} attempts (last: {_last_line(error)})"})
        ray.kill(slot.actor, no_restart=True)
        if replacements_left > 0:
            replacements_left -= 1
            start(slot)
        else:
            slot.dead, slot.queue = True, []

    for slot in slots:
        start(slot)
    try:
        while pending or inflight:
            for slot in slots:
                while slot.ready and not slot.dead and len(slot.queue) < options.per_worker and pending:
                    job = pending.popleft()
                    attempts[job.id] = attempts.get(job.id, 0) + 1
                    ref = slot.actor.process.remote(job, attempts[job.id])
                    inflight[ref] = (slot, job)
                    slot.queue.append(ref)
            if all(s.dead for s in slots):
                reason = init_errors[-1] if init_errors else "every worker was lost"
                if stats.workers_ready == 0 and init_errors:
                    raise CinepropError(f"workers could not start: {reason}")
                while pending:
                    job = pending.popleft()
                    on_row({"id": job.id, "status": "failed", "attempts": attempts.get(job.id, 0),
                            "output": job.output, "error": f"no worker left ({reason})"})
            waiting = list(inflight) + list(starting)
            if not waiting:
                continue  # nothing to wait for: the loop ends, or the next pass submits
            done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in done:
                if ref in starting:
                    slot, generation = starting.pop(ref)
                    try:
                        slot.info = ray.get(ref)
                    except RayError as exc:
                        if generation != slot.generation:
                            continue
                        if isinstance(exc, RayActorError) and _init_failed(exc):
                            init_errors.append(_last_line(exc))
                            on_event("worker_failed_to_start", slot=slot.index, error=_last_line(exc))
                            slot.dead = True  # a constructor error repeats: no replacement
                        else:
                            lose(slot, exc)
                        continue
                    if generation == slot.generation:
                        slot.ready = True
                        stats.workers_ready += 1
                        stats.worker_info.append(slot.info)
                        if stats.startup_seconds is None:
                            stats.startup_seconds = time.perf_counter() - started
                        on_event("worker_ready", slot=slot.index, **slot.info)
                    continue
                if ref not in inflight:
                    continue  # settled when its worker was lost
                slot, job = inflight[ref]
                try:
                    row = ray.get(ref)
                except RayActorError as exc:
                    lose(slot, exc)  # settles this cine and every other one the dead worker held
                    continue
                except RayError as exc:  # the task failed but its worker lives (e.g. a result Ray cannot send)
                    row = {"id": job.id, "status": "failed", "attempts": attempts[job.id], "output": job.output,
                           "error": _last_line(exc), "retry": True}
                del inflight[ref]
                slot.queue.remove(ref)
                if row["status"] == "failed" and row.pop("retry", False) and attempts[job.id] <= options.retries:
                    retry(job, row.get("error") or "error")
                    continue
                row.pop("retry", None)
                on_row(row)
    finally:
        for slot in slots:
            if slot.actor is not None:
                try:
                    ray.kill(slot.actor, no_restart=True)
                except Exception:  # already gone, or Ray is shutting down
                    pass
    return stats
