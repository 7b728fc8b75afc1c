"""Long calls run off the GUI thread: progress, outcome and Cancel delivered on poll (CinePropLib.tasks)."""

from __future__ import annotations

import threading
import time

import pytest

from CinePropLib.tasks import BackgroundTask, TaskCancelled


def _poll_until_done(task: BackgroundTask, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while task.poll():
        assert time.monotonic() < deadline, "task did not finish"
        time.sleep(0.01)


def _recorder():
    events: list = []
    return events, dict(on_done=lambda r: events.append(("done", r)), on_error=lambda e: events.append(("error", e)),
                        on_progress=lambda m, f: events.append(("progress", m, f)))


def test_work_runs_in_another_thread_and_poll_delivers_on_the_callers_thread():
    release = threading.Event()
    events, callbacks = _recorder()
    threads = {}

    def work(context):
        threads["work"] = threading.current_thread()
        context.progress("uploading", 0.5)
        release.wait(5)                       # the "GUI" keeps polling while this blocks
        return 42

    task = BackgroundTask(work, **callbacks)
    for _ in range(5):
        assert task.poll()                    # still running: the caller is never blocked
    release.set()
    _poll_until_done(task)
    assert threads["work"] is not threading.current_thread()
    assert events == [("progress", "uploading", 0.5), ("done", 42)]
    assert not task.poll() and events[-1] == ("done", 42)   # the outcome is delivered once


def test_errors_reach_on_error():
    events, callbacks = _recorder()
    task = BackgroundTask(lambda context: 1 / 0, **callbacks)
    _poll_until_done(task)
    assert len(events) == 1 and events[0][0] == "error" and isinstance(events[0][1], ZeroDivisionError)


@pytest.mark.parametrize("cooperative", [True, False])
def test_cancel_discards_the_result(cooperative):
    started, release = threading.Event(), threading.Event()
    events, callbacks = _recorder()

    def work(context):
        started.set()
        release.wait(5)
        if cooperative:
            context.check()                   # a step boundary: stops here
        return "late result"                  # a blocking call that returns anyway is discarded

    task = BackgroundTask(work, **callbacks)
    started.wait(5)
    task.cancel()
    release.set()
    _poll_until_done(task)
    assert task.cancelled and events == []


def test_check_raises_only_after_cancel():
    seen = []

    def work(context):
        context.check()
        seen.append(context.cancelled)
        return "ok"

    task = BackgroundTask(work, on_done=seen.append, on_error=seen.append)
    _poll_until_done(task)
    assert seen == [False, "ok"]
    assert issubclass(TaskCancelled, Exception)
