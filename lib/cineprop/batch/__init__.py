"""Cohort-scale batch propagation: every cine of a folder, on one machine or a Ray cluster.

* :mod:`cineprop.batch.plan` — which cines, which support volume, where results go; resume checks.
* :mod:`cineprop.batch.work` — :class:`CineWorker`: one propagator, one cine at a time, files in and out.
* :mod:`cineprop.batch.ray_runner` — the actor pool (``ActorPool``): bounded in-flight work, retries,
  lost workers.
* :mod:`cineprop.batch.cluster` — starting or joining Ray (reusable by collection relearning).
* :mod:`cineprop.batch.manifest` — manifest CSV, result journal, event log.
* :mod:`cineprop.batch.runner` — :func:`run_batch`, what ``cineprop batch`` calls.

Ray is imported only when a job uses it.
"""

from cineprop.batch.plan import CineJob, plan_jobs, read_ids
from cineprop.batch.runner import BatchConfig, derived, format_summary, run_batch
from cineprop.batch.work import CineWorker, WorkerSpec

__all__ = ["BatchConfig", "CineJob", "CineWorker", "WorkerSpec", "derived", "format_summary", "plan_jobs",
           "read_ids", "run_batch"]
