"""The widget's side of :mod:`CinePropLib.tasks`: one server step at a time, its bar and Cancel, errors shown.

Needs Slicer (``qt``, ``slicer.util.errorDisplay``); the threading it drives is
:class:`~CinePropLib.tasks.BackgroundTask`, tested without Slicer.
"""

import functools
import logging

import qt
import slicer

from CinePropLib import panel
from CinePropLib.client import ServerError
from CinePropLib.conversions import ConversionError
from CinePropLib.workflow import WorkflowError, describe_error
from CinePropLib.tasks import BackgroundTask

#: How often the GUI thread collects a running step's progress and outcome (ms).
POLL_MS = 100


def guarded(busy):
    """Run a quick button handler with a wait cursor; errors are shown where the user looks."""
    def decorate(method):
        @functools.wraps(method)
        def run(self, *_signalArgs):
            self._status(f"{busy}…")
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
            try:
                method(self)
            except Exception as exc:  # noqa: BLE001 - everything ends as a readable message
                self._showError(busy, exc)
            finally:
                slicer.app.restoreOverrideCursor()
        return run
    return decorate


class TaskRunnerMixin:
    """For a module widget with ``self.ui`` and ``_updateButtons()``: long calls off the GUI thread."""

    def initTasks(self):
        self._task = None
        self._taskTimer = qt.QTimer()
        self._taskTimer.setInterval(POLL_MS)
        self._taskTimer.connect("timeout()", self.onTaskTimer)

    def _status(self, text, error=False):
        panel.show_status(self.ui, text, error)

    def _showError(self, what, exc):
        """A dialog and the status line; a traceback in the console only for an unexpected error (a bug)."""
        if not isinstance(exc, (WorkflowError, ServerError, ConversionError)):
            logging.error("CineProp: %s failed", what, exc_info=exc)
        self._status(describe_error(exc), error=True)
        slicer.util.errorDisplay(describe_error(exc), windowTitle=f"CineProp: {what}")

    def _runTask(self, busy, work, onDone):
        """Run ``work(context)`` off the GUI thread; ``onDone(result)`` back on it. Cancel stops waiting."""
        if self._task is not None:
            raise WorkflowError("Wait for the running step to finish, or Cancel it")

        def finished(result):
            self._endTask()                 # first: onDone may start the next step (Next study → download)
            onDone(result)

        def failed(exc):
            self._endTask()
            self._showError(busy, exc)

        self._task = BackgroundTask(work, finished, failed,
                                    lambda message, fraction: panel.show_task(self.ui, message, fraction))
        panel.show_task(self.ui, f"{busy}…", None)
        self._taskTimer.start()
        self._updateButtons()

    def _endTask(self):
        self._task = None
        self._taskTimer.stop()
        panel.show_task(self.ui, None, None)
        self._updateButtons()

    def onTaskTimer(self):
        task = self._task
        if task is not None and not task.poll() and self._task is task:
            self._endTask()

    def onCancelTask(self):
        """Stop waiting now: the panel is free at once; the worker's late answer is discarded."""
        if self._task is not None:
            self._task.cancel()
            self._endTask()
            self._status("Cancelled; a late answer from the server is ignored.")

    def stopTasks(self):
        self._taskTimer.stop()
