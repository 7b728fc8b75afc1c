"""Starting or joining Ray for cineprop's cohort jobs (batch propagation now, collection relearning later).

* Default: a private local Ray instance started in this process with a CPU count and an object-store
  cap, shut down when the job ends (also on Ctrl-C / SIGTERM). Nothing to set up.
* ``address``: join an existing cluster (``ray://head:10001`` or ``head:6379``; ``auto`` for the local
  ``ray start`` cluster). The job's actors are killed at the end; the cluster keeps running.
* Ray already initialised by the caller (a test, a notebook): used as is, left running.

The cineprop package is shipped to a cluster with the job (``runtime_env`` ``py_modules``) so the
cluster's workers run exactly the driver's code; data and output folders must be on storage every
node mounts at the same path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from cineprop.errors import CinepropError

#: Object-store cap of the local instance. Only small result rows pass through it (workers read and
#: write files themselves), so this stays far from the default (30 % of RAM).
OBJECT_STORE_BYTES = 256 * 1024 * 1024


@dataclass
class RayInfo:
    """What the job started or joined."""

    owned: bool
    address: str | None
    dashboard_url: str | None
    cpus: float
    nodes: int
    logs: str | None


def ship_code_env() -> dict:
    """``runtime_env`` that uploads this cineprop package to a cluster's workers."""
    import cineprop

    return {"py_modules": [str(Path(cineprop.__file__).resolve().parent)],
            "excludes": ["__pycache__", "*.pyc"]}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, ship_code: bool = True,
                object_store_bytes: int = OBJECT_STORE_BYTES, log: Callable[[str], None] = print) -> Iterator[RayInfo]:
    """Start (or join) Ray for the duration of the ``with`` block; see the module docstring."""
    import ray

    if ray.is_initialized():
        yield _info(owned=False, address=address)
        return
    common = dict(include_dashboard=None, log_to_driver=False, logging_level="ERROR")
    with _terminate_as_interrupt() as rearm:
        try:  # ray.init inside the try: Ctrl-C while Ray starts still stops what it started
            if address:
                _check_reachable(address)
                runtime_env = ship_code_env() if ship_code else None
                try:
                    context = ray.init(address=address, runtime_env=runtime_env, **common)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    cause = exc.__cause__ or exc
                    detail = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
                    raise CinepropError(f"cannot join the Ray cluster at {address}: {detail[:300]}") from None
            else:
                # address="local": a new private instance even when `ray start` left a cluster on this machine
                context = ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                                   object_store_memory=object_store_bytes, **common)
            # ray.init installs its own SIGTERM handler (a stack dump, no cleanup): ours goes back on top
            if rearm():
                raise KeyboardInterrupt  # an interrupt during start-up that Ray's internals swallowed
            info = _info(owned=True, address=address, dashboard=getattr(context, "dashboard_url", None))
            log(f"ray: {'joined ' + address if address else 'local instance'}, {info.cpus:g} CPUs on {info.nodes} "
                f"node(s); dashboard: {info.dashboard_url or 'not available (needs ray[default])'}")
            yield info
        finally:
            ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes (Ray retries for a long time), when nothing listens at ``HOST:PORT``."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise CinepropError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise CinepropError(f"cannot join the Ray cluster at {address}: nothing answers ({exc.strerror or exc})") from None


def _info(owned: bool, address: str | None, dashboard: str | None = None) -> RayInfo:
    import ray

    context = ray.get_runtime_context()
    if dashboard is None:
        with contextlib.suppress(Exception):  # no public accessor when Ray was started by someone else
            dashboard = ray._private.worker.get_dashboard_url()
    dashboard = dashboard or None  # "" when the dashboard is not installed (ray without [default])
    if dashboard and not dashboard.startswith("http"):
        dashboard = f"http://{dashboard}"
    logs = None
    with contextlib.suppress(Exception):
        logs = str(Path(ray._private.worker._global_node.get_session_dir_path()) / "logs")
    return RayInfo(owned, address or context.gcs_address, dashboard, float(ray.cluster_resources().get("CPU", 0)),
                   len([n for n in ray.nodes() if n.get("Alive")]), logs)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn SIGTERM (a scheduler stopping the job) and SIGINT into KeyboardInterrupt, and remember them.

    Yields a function that installs the handlers again (after a library replaced them) and says
    whether an interrupt arrived meanwhile: one that landed where Python swallows exceptions (an
    at-fork callback while Ray starts its daemons) must still stop the job.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    arrived = []

    def _raise(signum, frame):  # noqa: ARG001
        arrived.append(signum)
        raise KeyboardInterrupt

    def rearm() -> bool:
        signal.signal(signal.SIGTERM, _raise)
        signal.signal(signal.SIGINT, _raise)
        return bool(arrived)

    previous = signal.signal(signal.SIGTERM, _raise), signal.signal(signal.SIGINT, _raise)
    try:
        yield rearm
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
