"""Long calls off the GUI thread: a worker thread, progress messages, Cancel, results delivered on poll.

Slicer's GUI (and MRML) must only be touched from the main thread, so a long call (upload,
propagate, relearn, train status) is split in three: read nodes → arrays on the GUI thread, the
network call in a :class:`BackgroundTask`, arrays → nodes in ``on_done`` on the GUI thread. The
widget polls :meth:`BackgroundTask.poll` from a ``QTimer`` (every 100 ms), which is what keeps the
panel responsive; no Qt is needed here, so the tests run it with plain threads.

Cancel is cooperative: the work function receives a :class:`TaskContext` and may check
``cancelled`` between steps; a blocking HTTP call cannot be interrupted, so a cancelled task's
result is discarded when it returns and ``on_done`` is never called.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable


class TaskCancelled(Exception):
    """Raised inside the work function by :meth:`TaskContext.check` after Cancel."""


@dataclass
class TaskContext:
    """What the work function may use: progress messages and the Cancel flag."""

    _messages: queue.Queue
    _cancel: threading.Event

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelled()

    def progress(self, message: str, fraction: float | None = None) -> None:
        """Report a step (``fraction`` in 0..1, ``None`` for "busy")."""
        self._messages.put((message, fraction))


class BackgroundTask:
    """Run ``work(context)`` in a daemon thread; :meth:`poll` (GUI thread) delivers progress and the outcome.

    Args:
        work: the long call; gets a :class:`TaskContext`, returns the result.
        on_done: called with the result, in :meth:`poll`, unless cancelled.
        on_error: called with the exception, in :meth:`poll` (never for a cancel).
        on_progress: called with ``(message, fraction)`` for each progress report, in :meth:`poll`.
    """

    def __init__(self, work: Callable[[TaskContext], Any], on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None],
                 on_progress: Callable[[str, float | None], None] | None = None) -> None:
        self._messages: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._outcome: tuple[str, Any] | None = None
        self._delivered = False
        self._on_done, self._on_error, self._on_progress = on_done, on_error, on_progress
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True, name="cineprop-task")
        self._thread.start()

    def _run(self, work: Callable[[TaskContext], Any]) -> None:
        try:
            self._outcome = ("done", work(TaskContext(self._messages, self._cancel)))
        except TaskCancelled:
            self._outcome = ("cancelled", None)
        except BaseException as exc:  # noqa: BLE001 - delivered to on_error on the GUI thread
            self._outcome = ("error", exc)

    def cancel(self) -> None:
        """Ask the work to stop; its result, if it still comes, is discarded."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def poll(self) -> bool:
        """Deliver queued progress, then the outcome once; returns whether the task is still running."""
        while True:
            try:
                message, fraction = self._messages.get_nowait()
            except queue.Empty:
                break
            if self._on_progress is not None and not self._cancel.is_set():
                self._on_progress(message, fraction)
        if self._thread.is_alive():
            return True
        if not self._delivered:
            self._delivered = True
            kind, value = self._outcome or ("error", RuntimeError("the task ended without a result"))
            if kind == "error" and not self._cancel.is_set():
                self._on_error(value)
            elif kind == "done" and not self._cancel.is_set():
                self._on_done(value)
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (tests, and Slicer's exit); returns whether it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
