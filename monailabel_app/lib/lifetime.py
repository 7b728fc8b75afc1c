"""Task subprocesses (train, batch infer, scoring) end with the server that started them.

MONAI Label 0.8.5 runs each task as ``python -m monailabel.interfaces.utils.app -m <method>``, a child
of the server (``monailabel/utils/async_tasks/utils.py``), and only stops it on ``DELETE /train/``.
A server that is killed (SIGKILL, OOM killer, a crash) leaves the child running: it went on to publish
a checkpoint minutes later under a restarted server that had no record of it. The child re-creates
the app, so :func:`end_with_server`, called from the app's constructor, starts a watcher thread in
task subprocesses only: once the process's parent is no longer the server (the server is gone and
the child was re-parented), it ends the process. Checkpoints are written atomically, so the served model stays whole.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

logger = logging.getLogger(__name__)

#: The module MONAI Label runs task subprocesses with.
TASK_MODULE = os.path.join("monailabel", "interfaces", "utils", "app.py")
#: Environment variable holding the server's pid (set by :func:`mark_server`).
SERVER_PID = "CINEPROP_SERVER_PID"
#: Seconds between checks of the parent process.
POLL_SECONDS = 1.0


def is_task_subprocess(argv: list[str] | None = None) -> bool:
    """Whether this process is a MONAI Label task subprocess (not the server, not a test)."""
    argv = sys.argv if argv is None else argv
    return bool(argv) and argv[0].endswith(TASK_MODULE)


def mark_server() -> None:
    """In the server process: let the task subprocesses it starts know its pid (they inherit the environment)."""
    os.environ[SERVER_PID] = str(os.getpid())


def end_with_server(poll: float = POLL_SECONDS) -> bool:
    """In a task subprocess, exit as soon as the server that started it is gone; returns whether it watches.

    The server is the pid :func:`mark_server` recorded; a task whose parent is already another
    process (the server died while the task was starting) exits at once.
    """
    if not is_task_subprocess() or not os.environ.get(SERVER_PID, "").isdigit() or \
            getattr(end_with_server, "watching", False):
        return False
    server = int(os.environ[SERVER_PID])

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(poll)
        logger.error(f"cineprop: the server (pid {server}) that started this task is gone; stopping the task")
        os._exit(3)  # no cleanup handlers: the task's outputs are written atomically

    threading.Thread(target=watch, name="cineprop-end-with-server", daemon=True).start()
    end_with_server.watching = True  # type: ignore[attr-defined]
    return True
