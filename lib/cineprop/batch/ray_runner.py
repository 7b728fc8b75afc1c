"""Running a batch on Ray: a pool of actors, one propagator each, fed with bounded in-flight work.

Scheduling (the driver's loop, :meth:`ActorPool.run`; :func:`run_on_ray` is its one-call form):

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


class ActorPool:
    """The driver's side of one batch on Ray: slots of actors, the queue of cines, attempts (see the module docstring).

    ``run(jobs)`` loops: :meth:`_submit` fills ready actors up to ``per_worker``, :meth:`_fail_if_no_worker`
    ends the batch when every slot is dead, and each finished reference is settled by :meth:`_started`
    (an actor's constructor) or :meth:`_finished` (a cine). :meth:`_lose` settles a dead actor's cines.

    Args:
        spec: how each actor builds its propagator.
        options: pool size and failure policy.
        on_row: called with each final manifest row.
        on_event: ``on_event(kind, **info)`` for the log (``worker_ready``, ``retry``, ``worker_lost``, ...).
        adopt: ``adopt(job, attempts)`` → the committed row of a cine whose reply was lost, or ``None``.
    """

    def __init__(self, spec: WorkerSpec, options: PoolOptions, on_row: Callable[[dict], None],
                 on_event: Callable[..., None] = lambda kind, **info: None,
                 adopt: Callable[[CineJob, int], dict | None] = lambda job, attempts: None):
        import ray

        self._ray = ray
        self.spec, self.options = spec, options
        self.on_row, self.on_event, self.adopt = on_row, on_event, adopt
        self.actor_class = ray.remote(CineWorker).options(
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
            memory=options.memory_per_worker, max_restarts=0, max_task_retries=0)
        self.stats = PoolStats()
        self.slots = [_Slot(i) for i in range(max(1, options.workers))]
        self.replacements_left = len(self.slots) * (options.retries + 1)
        self.pending: deque[CineJob] = deque()
        self.attempts: dict[str, int] = {}
        self.inflight: dict[object, tuple[_Slot, CineJob]] = {}   # cine task ref → (slot, cine)
        self.starting: dict[object, tuple[_Slot, int]] = {}       # ready() ref → (slot, its generation)
        self.init_errors: list[str] = []
        self.started = time.perf_counter()

    def run(self, jobs: list[CineJob]) -> PoolStats:
        """Propagate ``jobs``; every cine ends in exactly one ``on_row`` call. Kills the actors on exit."""
        self.pending.extend(jobs)
        for slot in self.slots:
            self._start(slot)
        try:
            while self.pending or self.inflight:
                self._submit()
                self._fail_if_no_worker()
                waiting = list(self.inflight) + list(self.starting)
                if not waiting:
                    continue  # nothing to wait for: the loop ends, or the next pass submits
                done, _ = self._ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in done:
                    if ref in self.starting:
                        self._started(ref)
                    elif ref in self.inflight:  # else settled when its worker was lost
                        self._finished(ref)
        finally:
            self._shutdown()
        return self.stats

    def _start(self, slot: _Slot) -> None:
        """Give ``slot`` a new actor (a new generation: replies of the old one are ignored)."""
        slot.generation += 1
        slot.actor = self.actor_class.remote(self.spec)
        slot.ready, slot.queue = False, []
        slot.ready_ref = slot.actor.ready.remote()
        self.starting[slot.ready_ref] = (slot, slot.generation)

    def _submit(self) -> None:
        """Hand pending cines to ready actors, at most ``per_worker`` in flight each."""
        for slot in self.slots:
            while slot.ready and not slot.dead and len(slot.queue) < self.options.per_worker and self.pending:
                job = self.pending.popleft()
                self.attempts[job.id] = self.attempts.get(job.id, 0) + 1
                ref = slot.actor.process.remote(job, self.attempts[job.id])
                self.inflight[ref] = (slot, job)
                slot.queue.append(ref)

    def _fail_if_no_worker(self) -> None:
        """With every slot dead: fail the pending cines (raise if no actor ever started)."""
        if not all(s.dead for s in self.slots):
            return
        reason = self.init_errors[-1] if self.init_errors else "every worker was lost"
        if self.stats.workers_ready == 0 and self.init_errors:
            raise CinepropError(f"workers could not start: {reason}")
        while self.pending:
            job = self.pending.popleft()
            self.on_row({"id": job.id, "status": "failed", "attempts": self.attempts.get(job.id, 0),
                         "output": job.output, "error": f"no worker left ({reason})"})

    def _started(self, ref: object) -> None:
        """An actor's constructor finished: the slot is ready, or the actor failed to start or died."""
        from ray.exceptions import RayActorError, RayError

        slot, generation = self.starting.pop(ref)
        try:
            slot.info = self._ray.get(ref)
        except RayError as exc:
            if generation != slot.generation:
                return
            if isinstance(exc, RayActorError) and _init_failed(exc):
                self.init_errors.append(_last_line(exc))
                self.on_event("worker_failed_to_start", slot=slot.index, error=_last_line(exc))
                slot.dead = True  # a constructor error repeats: no replacement
            else:
                self._lose(slot, exc)
            return
        if generation == slot.generation:
            slot.ready = True
            self.stats.workers_ready += 1
            self.stats.worker_info.append(slot.info)
            if self.stats.startup_seconds is None:
                self.stats.startup_seconds = time.perf_counter() - self.started
            self.on_event("worker_ready", slot=slot.index, **slot.info)

    def _finished(self, ref: object) -> None:
        """A cine's task finished: report its row, or retry it (an unexpected error with attempts left)."""
        from ray.exceptions import RayActorError, RayError

        slot, job = self.inflight[ref]
        try:
            row = self._ray.get(ref)
        except RayActorError as exc:
            self._lose(slot, exc)  # settles this cine and every other one the dead worker held
            return
        except RayError as exc:  # the task failed but its worker lives (e.g. a result Ray cannot send)
            row = {"id": job.id, "status": "failed", "attempts": self.attempts[job.id], "output": job.output,
                   "error": _last_line(exc), "retry": True}
        del self.inflight[ref]
        slot.queue.remove(ref)
        if row["status"] == "failed" and row.pop("retry", False) and self.attempts[job.id] <= self.options.retries:
            self._retry(job, row.get("error") or "error")
            return
        row.pop("retry", None)
        self.on_row(row)

    def _retry(self, job: CineJob, reason: str) -> None:
        self.stats.retried += 1
        self.on_event("retry", id=job.id, attempt=self.attempts[job.id] + 1, reason=reason)
        self.pending.appendleft(job)

    def _lose(self, slot: _Slot, error: BaseException) -> None:
        """The actor of ``slot`` died: settle every cine it held, then give the slot a fresh actor.

        An actor runs its cines one at a time in submission order, so of the cines it held, those
        committed in the journal are adopted, the oldest other one is the one it was running (charged
        one attempt) and the rest were only queued (resubmitted without charge).
        """
        self.stats.workers_lost += 1
        self.on_event("worker_lost", worker=slot.info.get("worker"), slot=slot.index, error=_last_line(error))
        held = [self.inflight.pop(ref)[1] for ref in slot.queue if ref in self.inflight]
        charged = False
        for job in held:
            row = self.adopt(job, self.attempts[job.id])
            if row is not None:
                self.stats.adopted += 1
                self.on_event("adopted", id=job.id, attempts=self.attempts[job.id])
                self.on_row(row)
            elif charged:
                self.attempts[job.id] -= 1  # never started: this attempt does not count
                self.pending.appendleft(job)
            else:
                charged = True
                self._charge_lost(job, error)
        self._ray.kill(slot.actor, no_restart=True)
        if self.replacements_left > 0:
            self.replacements_left -= 1
            self._start(slot)
        else:
            slot.dead, slot.queue = True, []

    def _charge_lost(self, job: CineJob, error: BaseException) -> None:
        """The cine a lost actor was running: retry it, or fail it after ``retries + 1`` attempts."""
        attempts = self.attempts[job.id]
        if attempts <= self.options.retries:
            self._retry(job, "worker lost")
        else:
            self.on_row({"id": job.id, "status": "failed", "attempts": attempts, "output": job.output,
                         "error": f"worker lost on each of {attempts} attempts (last: {_last_line(error)})"})

    def _shutdown(self) -> None:
        for slot in self.slots:
            if slot.actor is not None:
                try:
                    self._ray.kill(slot.actor, no_restart=True)
                except Exception:  # already gone, or Ray is shutting down
                    pass


def run_on_ray(jobs: list[CineJob], spec: WorkerSpec, options: PoolOptions, on_row: Callable[[dict], None],
               on_event: Callable[..., None] = lambda kind, **info: None,
               adopt: Callable[[CineJob, int], dict | None] = lambda job, attempts: None) -> PoolStats:
    """Propagate ``jobs`` on the current Ray instance with an :class:`ActorPool`; ``on_row`` gets each final row."""
    return ActorPool(spec, options, on_row, on_event, adopt).run(jobs)
