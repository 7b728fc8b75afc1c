"""What a worker does with one cine: read it and its support, propagate, write the labels, report.

The same :class:`CineWorker` runs in the plain single-process loop and inside each Ray actor, so
the two paths differ only in scheduling. A worker builds its propagator once
(:func:`cineprop.methods.build_propagator`) and reads and writes files itself: only paths go in and
a small result row comes out, never an image array.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cineprop.batch.manifest import append_line
from cineprop.batch.plan import CineJob
from cineprop.errors import CinepropError, SupportError, where
from cineprop.io import write_label
from cineprop.propagation import DEFAULT_FLAG_THRESHOLD
from cineprop.volume_propagation import load_painted, propagate_volume

#: Exit status of a worker process stopped by the crash-injection test hook.
CRASH_EXIT_CODE = 77


@dataclass(frozen=True)
class WorkerSpec:
    """How every worker of a job is built and what it records.

    Attributes:
        method: a :func:`~cineprop.methods.build_propagator` name.
        options: its options object (:func:`~cineprop.methods.method_options`), ``None``: the defaults.
        flag_threshold: query frames with confidence below this are flagged in the manifest.
        threads: cap on torch / OpenCV threads in the worker (Ray gives each worker ``cpus_per_worker``
            cores; without a cap each library would start one thread per core of the node).
        run: id of this run, written into the journal.
        journal: the journal file (``OUT_DIR/.batch/journal.jsonl``).
        crash_on: TEST HOOK, empty by default: ``{cine_id: n}`` makes the worker process exit at once
            (``os._exit``, as if killed) on the first ``n`` attempts at that cine.
    """

    method: str
    options: Any = None
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD
    threads: int | None = None
    run: str = ""
    journal: str | None = None
    crash_on: dict = field(default_factory=dict)


def _cap_threads(threads: int) -> None:
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # only learned methods import torch; do not pull it in for flow
        sys.modules["torch"].set_num_threads(threads)


class CineWorker:
    """Propagates cines one at a time with one propagator built at construction."""

    def __init__(self, spec: WorkerSpec):
        from cineprop.methods import build_propagator

        start = time.perf_counter()
        self.spec = spec
        self.propagator = build_propagator(spec.method, spec.options)
        if spec.threads:
            _cap_threads(spec.threads)
        self.build_seconds = time.perf_counter() - start
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> dict:
        """Where this worker runs and how long building its propagator took."""
        return {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "build_seconds": round(self.build_seconds, 3)}

    def process(self, job: CineJob, attempt: int = 1) -> dict:
        """Propagate one cine; return its manifest row.

        Never raises for a problem of the cine: the row has ``status="failed"``, the one-line
        ``error`` and ``retry`` (False for user errors, which would fail again the same way).
        """
        start, cpu_start = time.perf_counter(), time.process_time()
        if attempt <= int(self.spec.crash_on.get(job.id, 0)):
            os._exit(CRASH_EXIT_CODE)  # test hook: behave like a worker killed mid-cine
        row = {"id": job.id, "attempts": attempt, "worker": self.name, "output": job.output}
        try:
            row.update(propagate_job(job, self.propagator, self.spec.flag_threshold))
            row["status"] = "ok"
        except CinepropError as exc:
            row.update(status="failed", error=str(exc), retry=False)
        except Exception as exc:  # a bug or a transient failure (I/O, memory): worth another try
            tail = traceback.extract_tb(exc.__traceback__)[-1]
            row.update(status="failed", retry=True,
                       error=f"{type(exc).__name__}: {exc} (at {Path(tail.filename).name}:{tail.lineno})")
        row["seconds"] = round(time.perf_counter() - start, 4)
        row["cpu_seconds"] = round(time.process_time() - cpu_start, 4)
        row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if row["status"] == "ok" and self.spec.journal:
            append_line(self.spec.journal, {**row, "run": self.spec.run})
        return row


def propagate_job(job: CineJob, propagator, flag_threshold: float = DEFAULT_FLAG_THRESHOLD) -> dict:
    """Read ``job.image`` and ``job.support``, propagate every painted slice position, write ``job.output``.

    4D cines (``H×W×Z×T``): slice positions with nothing painted stay 0 in the output
    (:func:`cineprop.volume_propagation.propagate_volume`).

    Returns:
        the manifest fields ``frames``, ``support_frames``, ``mean_confidence``, ``flagged``,
        ``flagged_frames``, ``propagate_seconds``.

    Raises:
        CinepropError: unreadable cine or support, shape mismatch, nothing painted.
    """
    if job.problem or not job.support:
        raise SupportError(job.problem or where(job.image, "no support volume"))
    volume, cines, painted = load_painted(job.image, job.support)
    result = propagate_volume(volume, cines, painted, propagator.propagate)
    write_label(job.output, result.labels, volume)
    flagged = [f"{'' if r.cine.slice_index is None else f'z{r.cine.slice_index}:'}{t}"
               for r in result.cines for t in r.propagation.flagged(flag_threshold)]
    query_confidence = result.query_confidence()
    return {"frames": sum(r.cine.num_frames for r in result.cines),
            "support_frames": sum(len(r.propagation.support_frames) for r in result.cines),
            "mean_confidence": round(float(np.mean(query_confidence)), 4) if query_confidence else None,
            "flagged": len(flagged), "flagged_frames": flagged, "propagate_seconds": round(result.seconds, 4)}
