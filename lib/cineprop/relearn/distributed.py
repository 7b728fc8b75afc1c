"""Data-parallel collection relearning on Ray Train (``cineprop relearn … --workers N``).

``N`` Ray Train workers (a ``TorchTrainer`` whose process group uses the gloo backend, so CPUs are
enough) each run :func:`cineprop.relearn.collection.run_collection` on their shard of the images
(``sources[rank::N]``), with their own seeded visiting order and windows. After every backward pass
the gradients are averaged over the workers with one ``all_reduce`` of a flat buffer (what torch's
``DistributedDataParallel`` does, done by hand because relearning calls parts of the model, not its
``forward``); each worker then takes the same optimiser step, so the students stay identical (checked
at the end). One step therefore sees ``N`` cines: with the same ``--steps`` a run of ``N`` workers
does ``N`` times the work of one process in about the time of one.

Rank 0 writes ``OUT.last.pt`` and ``OUT`` atomically in exactly the single-process format (plus the
sampling state of every rank), so a run resumes with the same command and its result loads as the
``model`` method. Ray is started or joined by :func:`cineprop.batch.cluster.ray_session` (a local
instance by default; ``address`` for a cluster, whose nodes must see the data, the image checkpoint
and ``OUT`` at the same paths). A live progress bar on the driver is fed by rank 0 through a small
actor.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import replace
from typing import Callable

import torch

from cineprop.errors import CinepropError, InputError, where
from cineprop.relearn.collection import CollectionJob, Communicator, progress_bar, run_collection


class TorchDistributedCommunicator(Communicator):
    """The collectives of :class:`~cineprop.relearn.collection.Communicator` over ``torch.distributed``."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        # One flat buffer: every gradient (zeros where this worker has none) and, per parameter, a
        # 0/1 "has a gradient" flag, so a parameter no worker touched keeps grad None as in one process.
        flat = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                for p in params]
        present = torch.tensor([float(p.grad is not None) for p in params], dtype=flat[0].dtype, device=flat[0].device)
        buffer = torch.cat(flat + [present])
        self.dist.all_reduce(buffer)
        counts = buffer[-len(params):]
        offset = 0
        for p, count in zip(params, counts):
            n = p.numel()
            if float(count) > 0:
                p.grad = (buffer[offset:offset + n] / self.world).view_as(p).clone()
            else:
                p.grad = None
            offset += n

    def gather(self, obj):
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: torch.nn.Module) -> None:
        with torch.no_grad():
            for value in module.state_dict().values():
                self.dist.broadcast(value, src=0)


def _worker_loop(config: dict) -> None:
    """The function every Ray Train worker runs (module level: Ray pickles it by reference)."""
    torch.set_num_threads(max(1, int(config["threads"])))
    comm = TorchDistributedCommunicator()
    tracker = config["tracker"]
    on_step: Callable[[int, dict], None] | None = None
    if comm.rank == 0:
        on_step = lambda step, terms: tracker.update.remote(step, terms)  # noqa: E731 (fire and forget)
    summary = run_collection(config["job"], comm, on_step)
    if comm.rank == 0:
        import ray

        ray.get(tracker.finish.remote(summary))


class _Tracker:
    """Rank 0's latest ``(step, terms)`` for the driver's progress bar, and its summary (a Ray actor, no CPU)."""

    def __init__(self):
        self.latest, self.summary = (0, {}), None

    def update(self, step: int, terms: dict) -> None:
        self.latest = (step, terms)

    def finish(self, summary: dict) -> None:
        self.summary = summary

    def poll(self) -> tuple[int, dict]:
        return self.latest

    def result(self) -> dict | None:
        return self.summary


def relearn_distributed(job: CollectionJob, workers: int, address: str | None = None, cpus_per_worker: float = 1.0,
                        max_failures: int = 0, progress: bool = True, ship_code: bool = True,
                        log: Callable[[str], None] = print) -> dict:
    """Relearn ``job`` with ``workers`` data-parallel Ray Train workers; returns rank 0's summary.

    ``max_failures``: how many times Ray Train restarts the worker group after a worker dies; each
    restart resumes from the last ``OUT.last.pt`` (so at most ``save_every`` steps are redone).
    """
    job = _checked_job(job, workers)

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from cineprop.batch.cluster import ray_session

    storage = tempfile.mkdtemp(prefix="cineprop-relearn-ray-")   # Ray Train's run folder; we report no checkpoint
    started = time.time()
    try:
        with ray_session(address, ship_code=ship_code, log=log) as info, progress_bar(job, progress) as on_step:
            needed = workers * cpus_per_worker
            if info.cpus < needed and address is None:
                raise CinepropError(f"--workers {workers} × --cpus-per-worker {cpus_per_worker:g} needs {needed:g} "
                                    f"CPUs; this Ray instance has {info.cpus:g}")
            if info.cpus < needed:
                log(f"ray: the cluster has {info.cpus:g} CPUs, the workers need {needed:g}: waiting for room")
            tracker = ray.remote(num_cpus=0)(_Tracker).remote()
            trainer = TorchTrainer(
                _worker_loop,
                train_loop_config={"job": job, "tracker": tracker, "threads": cpus_per_worker},
                torch_config=TorchConfig(backend="gloo"),
                scaling_config=ScalingConfig(num_workers=workers, use_gpu=False,
                                             resources_per_worker={"CPU": cpus_per_worker}),
                run_config=RunConfig(name="cineprop-relearn", storage_path=storage,
                                     failure_config=FailureConfig(max_failures=max_failures)))
            stop = threading.Event()
            poller = threading.Thread(target=_poll, args=(tracker, on_step, stop), daemon=True)
            if progress:
                poller.start()
            try:
                _fit(trainer)
            finally:
                stop.set()
                if poller.is_alive():
                    poller.join(timeout=5)
            on_step(*ray.get(tracker.poll.remote()))
            summary = ray.get(tracker.result.remote())
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    if summary is None:
        raise CinepropError("distributed relearning ended without a result from rank 0")
    summary["wall_minutes"] = (time.time() - started) / 60.0
    return summary


def _checked_job(job: CollectionJob, workers: int) -> CollectionJob:
    """``job`` with absolute paths, checked before Ray starts (user errors surface here), set to resume
    (a fresh run's old ``last.pt`` removed now, so that a worker group restarted after a failure
    resumes this run)."""
    if workers < 1:
        raise CinepropError("--workers must be at least 1")
    job = job.absolute()
    sources = job.sources()
    if len(sources) < workers:
        raise InputError(where(job.data_dir, f"{len(sources)} image(s) for {workers} workers: "
                                             f"use at most {len(sources)} workers"))
    if job.checkpoint is not None:
        from cineprop.checkpoints import read_checkpoint

        if read_checkpoint(job.checkpoint).get("kind") == "relearn":
            raise InputError(where(job.checkpoint, "collection relearning starts from an image checkpoint"))
    job.out.parent.mkdir(parents=True, exist_ok=True)
    if not job.resume:
        job.last.unlink(missing_ok=True)
        job = replace(job, resume=True)
    return job


def _poll(tracker, on_step: Callable[[int, dict], None], stop: threading.Event) -> None:
    import ray

    shown = -1
    while not stop.wait(0.5):
        try:
            step, terms = ray.get(tracker.poll.remote(), timeout=5)
        except Exception:  # noqa: BLE001 (Ray shutting down, a slow actor: the bar just waits)
            continue
        if step != shown and terms:
            on_step(step, terms)
            shown = step


def _fit(trainer):
    """``trainer.fit()``, with a worker's own cineprop error (bad input, bad checkpoint) re-raised as is."""
    from ray.train import TrainingFailedError

    try:
        return trainer.fit()
    except TrainingFailedError as exc:
        failures = getattr(exc, "worker_failures", None) or {}
        for rank, failure in sorted(failures.items()):
            cause = _cinprop_cause(failure)
            if cause is not None:
                raise type(cause)(str(cause)) from None
        detail = "; ".join(f"worker {rank}: {_last_line(f)}" for rank, f in sorted(failures.items()))
        raise CinepropError(f"distributed relearning failed: {detail or _last_line(exc)}") from exc


def _cinprop_cause(exc: BaseException | None) -> CinepropError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CinepropError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
