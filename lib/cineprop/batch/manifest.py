"""The job's records: the manifest (one CSV row per cine), the result journal and the event log.

* ``OUT_DIR/manifest.csv`` — what a person opens: one row per cine with :data:`FIELDS`. It is
  rewritten atomically (never half-written), at most every ``flush_seconds`` while results arrive
  and at the end (also on Ctrl-C), so a 10,000-cine job does not rewrite it 10,000 times.
* ``OUT_DIR/.batch/journal.jsonl`` — the commit log: a worker appends one JSON line per result
  right after its label volume is in place. A result whose reply was lost (its worker died after
  writing) is found here instead of being computed and written a second time, and a driver that died
  before its last manifest flush loses nothing.
* ``OUT_DIR/.batch/events.jsonl`` — the driver's log: job start/end, workers ready (host, pid),
  workers lost, retries. This is where a person (or the fault test) finds worker pids.

Appends are single ``write`` calls of one line on an ``O_APPEND`` descriptor: atomic on a local
file system; a torn line (possible on some network file systems) is skipped when read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from cineprop.errors import InputError, where
from cineprop.io.atomic import atomic_write_text

#: Manifest columns. ``frames``: frames propagated (all slice positions); ``mean_confidence``: mean
#: confidence of the query (unpainted) frames; ``flagged``: number of query frames below the flag
#: threshold, listed in ``flagged_frames`` (``t`` for 3D, ``zZ:t`` for 4D); ``seconds``: the worker's
#: wall time for the cine (read, propagate, write), ``cpu_seconds`` the CPU time its process used meanwhile
#: (all threads; unlike wall time it does not grow when other work shares the cores);
#: ``attempts``: tries this run (a worker lost with the cine in flight counts one).
FIELDS = ["id", "status", "frames", "support_frames", "mean_confidence", "flagged", "flagged_frames", "seconds",
          "cpu_seconds", "propagate_seconds", "attempts", "worker", "finished", "output", "error"]
#: Row statuses: ``ok`` (output written), ``failed`` (error says why), ``no_support`` (nothing to propagate).
STATUSES = ("ok", "failed", "no_support")


class Manifest:
    """The per-cine rows of a job, kept in memory and flushed atomically to ``path``.

    Rows of cines outside the current run (an earlier run with a wider selection) are kept.
    """

    def __init__(self, path: str | os.PathLike, flush_seconds: float = 2.0):
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.rows: dict[str, dict] = {}
        self._dirty = False
        self._last_flush = 0.0

    @classmethod
    def load(cls, path: str | os.PathLike, flush_seconds: float = 2.0) -> "Manifest":
        """Read an existing manifest (or start an empty one when the file does not exist)."""
        manifest = cls(path, flush_seconds)
        if manifest.path.exists():
            try:
                with manifest.path.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    if not reader.fieldnames or "id" not in reader.fieldnames or "status" not in reader.fieldnames:
                        raise ValueError("no id/status columns")
                    for row in reader:
                        manifest.rows[row["id"]] = {k: row.get(k, "") or "" for k in FIELDS}
            except (OSError, ValueError, csv.Error) as exc:
                raise InputError(where(manifest.path, f"unreadable manifest ({exc}); pass --redo to start over")) from None
        return manifest

    def get(self, cine_id: str) -> dict | None:
        return self.rows.get(cine_id)

    def record(self, row: dict) -> None:
        """Set the row of ``row["id"]`` and flush if the last flush is older than ``flush_seconds``."""
        self.rows[row["id"]] = {k: _cell(row.get(k)) for k in FIELDS}
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write every row now (atomically), sorted by id."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for cine_id in sorted(self.rows):
            writer.writerow(self.rows[cine_id])
        atomic_write_text(self.path, buffer.getvalue())
        self._dirty = False
        self._last_flush = time.monotonic()

    def counts(self, ids: Iterable[str] | None = None) -> Counter:
        """Rows per status (only of ``ids`` when given)."""
        keys = self.rows if ids is None else [i for i in ids if i in self.rows]
        return Counter(self.rows[k]["status"] for k in keys)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value).replace("\n", " ")


def append_line(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line (newline first) with a single write on an O_APPEND descriptor."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # The newline goes first: a line torn by a writer that died mid-write is then ended by the next
    # record instead of swallowing it.
    data = ("\n" + json.dumps(record, sort_keys=True, default=str)).encode("utf-8")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike) -> Iterator[dict]:
    """The JSON records of an append-only log; torn or garbled lines are skipped."""
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def journal_path(state: Path) -> Path:
    return state / "journal.jsonl"


def events_path(state: Path) -> Path:
    return state / "events.jsonl"


def log_event(state: Path, kind: str, **info: object) -> None:
    """Append a driver event (``job_start``, ``worker_ready``, ``worker_lost``, ``retry``, ``adopted``, ``job_end``)."""
    append_line(events_path(state), {"event": kind, "time": round(time.time(), 3), "host": socket.gethostname(),
                                     **info})


def committed(state: Path, run: str | None = None) -> dict[str, dict]:
    """Result rows of the journal by cine id (last one wins), only of run ``run`` when given."""
    rows = {}
    for record in read_lines(journal_path(state)):
        if "id" in record and record.get("status") == "ok" and (run is None or record.get("run") == run):
            rows[record["id"]] = record
    return rows
