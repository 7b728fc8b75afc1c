"""Start and stop a REAL MONAI Label server running the cineprop app (tests and benchmarks).

Interface (stable; other test suites, e.g. the Slicer extension's REST client, rely on it)::

    from servers import running_server, prepare_sample_studies, TEST_CONF

    studies = tmp_path / "studies"
    prepare_sample_studies(studies)               # the 3 sample cines + a painted support each
    with running_server(studies, conf=TEST_CONF) as server:
        requests.get(server.url + "/info/")       # http://127.0.0.1:<free port>
        server.studies                            # the studies folder (Path)
        server.log_tail()                         # the server's output, for failure messages
    # stopped here, also when the body raised: the whole process group is killed

or, in pytest, the session-scoped fixture ``cineprop_server`` (``tests/conftest.py``) which yields
one :class:`CinepropServer` on a temporary copy of the sample study for the whole run, and
``cineprop_train_server`` (method ``model`` with a tiny checkpoint, train tasks registered) which
runs a temporary copy of the app (:func:`copy_app`), so what training publishes in its ``model/``
never reaches this checkout's ``monailabel_app/model``.

The server is ``python -m monailabel.main start_server`` with this interpreter (the
``monailabel`` script would use whatever ``python`` is first on PATH), bound to 127.0.0.1, with
``lib/`` of this checkout first on PYTHONPATH so the server runs the same ``cineprop`` as the tests.
MONAI Label's automatic scoring runs (at start and after every "next sample") are off unless
``auto_scoring=True``: they start a subprocess each time and would race with tests that score
explicitly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import requests

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "monailabel_app"
SAMPLE = REPO / "data" / "sample"

#: ``--conf`` of test servers. The learned method "model" is not registered yet: switching every
#: server test to it is this one line (``{"method": "model"}``, or ``{}`` for the app's default).
TEST_CONF: dict[str, str] = {"method": "flow"}


def copy_app(dest: str | Path) -> Path:
    """Copy the app (``main.py``, ``lib/``) to ``dest`` with an empty ``model/``; returns ``dest``."""
    import shutil

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(APP_DIR / "main.py", dest / "main.py")
    shutil.copytree(APP_DIR / "lib", dest / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "model").mkdir(exist_ok=True)
    return dest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_sample_studies(dest: str | Path, ids: list[str] | None = None, support: str = "middle", shots: int = 2,
                           with_support: bool | list[str] = True) -> list[str]:
    """Copy the bundled sample cines into ``dest`` with a painted support each (``tools/prepare_studies.py``)."""
    spec = importlib.util.spec_from_file_location("prepare_studies", REPO / "tools" / "prepare_studies.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.prepare_studies(SAMPLE, dest, support, shots, ids, with_support)


@dataclass
class CinepropServer:
    """A running server. ``url`` has no trailing slash; ``studies`` is its datastore folder."""

    url: str
    port: int
    studies: Path
    app_dir: Path
    log_path: Path
    conf: dict[str, str]
    workers: int | None
    started_in: float = 0.0  # seconds from launch until /info/ answers and every worker has started
    process: subprocess.Popen | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and everything it started (workers, batch/scoring subprocesses)."""
        if self.process is None:
            return
        try:
            group = os.getpgid(self.process.pid)
        except ProcessLookupError:
            group = None
        if group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)  # stragglers: task subprocesses, workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process = None


def start_server(studies: str | Path, conf: Mapping[str, str] | None = None, workers: int | None = None,
                 port: int | None = None, auto_scoring: bool = False, env: Mapping[str, str] | None = None,
                 log_path: str | Path | None = None, timeout: float = 180.0,
                 app_dir: str | Path | None = None, headers: Mapping[str, str] | None = None) -> CinepropServer:
    """Launch a server and wait until ``GET /info/`` answers 200. Call :meth:`CinepropServer.stop`.

    Args:
        studies: the datastore folder (created when missing).
        conf: ``--conf`` key/values for the app (default :data:`TEST_CONF`).
        workers: uvicorn worker processes (``--workers``); ``None`` for MONAI Label's default (one).
        auto_scoring: keep MONAI Label's automatic scoring runs.
        env: extra environment variables for the server.
        log_path: where the server's output goes (default: a temporary file).
        app_dir: the app folder to run (default: this checkout's ``monailabel_app``; see :func:`copy_app`).
        headers: sent with the readiness ``GET /info/`` (e.g. a bearer token when authentication is on).

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` (with its log's tail).
    """
    studies = Path(studies).resolve()
    studies.mkdir(parents=True, exist_ok=True)
    conf = dict(TEST_CONF if conf is None else conf)
    port = port or free_port()
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"monailabel-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    app_dir = Path(app_dir).resolve() if app_dir else APP_DIR
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies",
           str(studies), "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        cmd += ["--conf", key, str(value)]
    if workers:
        cmd += ["--workers", str(workers)]
    run_env = {**os.environ, **(env or {})}
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO / "lib"), run_env.get("PYTHONPATH", "")] if p)
    run_env["PYTHONUNBUFFERED"] = "1"  # log lines reach log_path at once (info_during_infer waits on them)
    if not auto_scoring:
        run_env["MONAI_LABEL_AUTO_UPDATE_SCORING"] = "false"
    server = CinepropServer(f"http://127.0.0.1:{port}", port, studies, app_dir, log_path, conf, workers)
    offset = log_path.stat().st_size if log_path.exists() else 0
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        # cwd: MONAI Label reads a `.env` from the working directory; use a neutral one.
        server.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=run_env, cwd=studies.parent, start_new_session=True)
    try:
        while True:
            if not server.alive():
                raise RuntimeError(f"monailabel server exited with {server.process.returncode}:\n{server.log_tail()}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"monailabel server did not answer within {timeout:.0f} s:\n{server.log_tail()}")
            try:
                if requests.get(server.url + "/info/", timeout=5, headers=headers).status_code == 200 and \
                        _started_workers(log_path, offset) >= (workers or 1):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.perf_counter() - start
    return server


def _started_workers(log_path: Path, offset: int) -> int:
    """How many uvicorn workers logged "Application startup complete." since ``offset``."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        return f.read().count(b"Application startup complete.")


@contextlib.contextmanager
def running_server(studies: str | Path, **kwargs) -> Iterator[CinepropServer]:
    """Context manager around :func:`start_server`; the server is always stopped on exit."""
    server = start_server(studies, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def synthetic_study(studies: str | Path, image_id: str, height: int = 256, width: int = 256, frames: int = 30,
                    support_frames: tuple[int, ...] = (0,), seed: int = 1, speed: float = 1.0) -> Path:
    """Write a synthetic cine (``cineprop.synthetic.moving_shapes``, 2 structures) into ``studies``.

    Returns a support label file (outside ``studies``) with the true labels of ``support_frames``.
    """
    import numpy as np

    from cineprop.io import Geometry, Volume, write_image, write_label
    from cineprop.synthetic import moving_shapes

    image, truth = moving_shapes(height, width, frames, labels=2, seed=seed, speed=speed)
    geometry = Geometry((1.4, 1.4, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel().tolist()))
    write_image(Path(studies) / f"{image_id}.nii.gz", image, geometry)
    painted = np.zeros_like(truth)
    for f in support_frames:
        painted[:, :, f] = truth[:, :, f]
    return write_label(Path(studies).parent / f"{image_id}_support.nii.gz", painted, Volume(image, geometry))


def info_latency(server: CinepropServer) -> float:
    """Seconds for one ``GET /info/`` on a new connection (what a second client sees)."""
    start = time.perf_counter()
    response = requests.get(server.url + "/info/", timeout=600, headers={"Connection": "close"})
    response.raise_for_status()
    return time.perf_counter() - start


def info_during_infer(server: CinepropServer, image_id: str, support: Path, params: dict | None = None) -> dict:
    """Send an infer, and once the server has started it (its log says so), a ``GET /info/``.

    Returns seconds since the infer was sent: ``info_sent``, ``info_done``, ``infer_done``, plus
    ``info_latency`` and the infer's ``status``. ``info_done < infer_done`` means /info was answered
    while the inference was still running.
    """
    import json

    marker = "Infer Request:"
    seen = server.log_path.read_text(errors="replace").count(marker)
    result: dict = {}
    start = time.perf_counter()

    def run_infer() -> None:
        with open(support, "rb") as f:
            r = requests.post(f"{server.url}/infer/cineprop", params={"image": image_id, "output": "json"},
                              files={"label": (support.name, f), "params": (None, json.dumps(params or {}))},
                              timeout=600)
        result["status"] = r.status_code
        result["infer_done"] = time.perf_counter() - start

    thread = threading.Thread(target=run_infer)
    thread.start()
    try:
        while server.log_path.read_text(errors="replace").count(marker) <= seen:
            if not thread.is_alive():
                raise RuntimeError(f"infer returned before it was seen in the log:\n{server.log_tail()}")
            time.sleep(0.005)
        result["info_sent"] = time.perf_counter() - start
        result["info_latency"] = info_latency(server)
        result["info_done"] = time.perf_counter() - start
    finally:
        thread.join()
    return result


def wait_for_training(server: CinepropServer, timeout: float = 600.0) -> dict:
    """Poll ``GET /train/`` until the latest train task ends; returns its record (``status`` DONE/ERROR)."""
    deadline = time.monotonic() + timeout
    while True:
        record = requests.get(server.url + "/train/", timeout=30).json()
        if record.get("status") not in ("SUBMITTED", "RUNNING"):
            return record
        if time.monotonic() > deadline:
            raise RuntimeError(f"training did not end within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(1.0)


#: The train server's studies: tiny synthetic cines (one structure), as in ``tests/test_finetune.py``.
TRAIN_STUDIES = ("study0", "study1", "study2", "study3")
#: Of those, the ones with a saved support (frame 0 painted), what ``cineprop_relearn`` learns from.
TRAIN_SUPPORTED = ("study0", "study1")


def train_studies(root: str | Path) -> tuple[Path, Path, Path]:
    """Write the train server's data under ``root``: ``(studies, truth folder, tiny checkpoint)``.

    ``studies`` holds :data:`TRAIN_STUDIES` (40×40×8 moving-shape cines) and a support label for
    :data:`TRAIN_SUPPORTED`; ``truth/<id>.nii.gz`` their full labels (to submit as ``final``);
    the checkpoint is a randomly initialised tiny ``FewShotSegmenter`` (seed 0), so fine-tuning
    on the truth measurably improves it within seconds.
    """
    import numpy as np

    from cineprop.io import Geometry, Volume, write_image, write_label
    from cineprop.synthetic import moving_shapes

    root = Path(root)
    studies, truth_dir = root / "studies", root / "truth"
    (studies / "labels" / "support").mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()))
    for seed, image_id in enumerate(TRAIN_STUDIES):
        frames, labels = moving_shapes(40, 40, 8, labels=1, seed=seed)
        volume = Volume(frames, geometry)
        write_image(studies / f"{image_id}.nii.gz", frames, geometry)
        write_label(truth_dir / f"{image_id}.nii.gz", labels, volume)
        if image_id in TRAIN_SUPPORTED:
            painted = np.zeros_like(labels)
            painted[:, :, 0] = labels[:, :, 0]
            write_label(studies / "labels" / "support" / f"{image_id}.nii.gz", painted, volume)
    return studies, truth_dir, tiny_checkpoint(root / "tiny.pt")


def tiny_checkpoint(path: str | Path) -> Path:
    """Write a randomly initialised tiny ``FewShotSegmenter`` (seed 0, resolution 48) checkpoint to ``path``."""
    import torch

    from cineprop.checkpoints import save_checkpoint
    from cineprop.model import FewShotSegmenter, ModelConfig

    torch.manual_seed(0)
    model = FewShotSegmenter(ModelConfig(resolution=48, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1),
                                         decoder=(16, 12, 8)))
    return Path(save_checkpoint(path, model, "image", {"note": "random init, tests only"}))
