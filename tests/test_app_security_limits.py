"""Attacks that need a server configured otherwise: tight upload limits, an allowed web origin, a
learned method whose served checkpoint is planted, and a training run whose server is killed.

``limits_server``: a copy of the app (:func:`servers.copy_app`) on ``servers.train_studies`` with
method ``model`` on the tiny test checkpoint, ``upload_seconds 10``, ``upload_memory_mb 100``,
``upload_max_mb 0`` (so only time and memory stop the inputs below) and ``cors_origins
http://127.0.0.1:3000``. Each test asserts the attack fails and nothing is left behind (``Snapshot``).
"""

from __future__ import annotations

import gzip
import os
import signal
import time

import nibabel as nib
import numpy as np
import psutil
import pytest
import requests
import torch
from security_helpers import Snapshot, zip_of_zeros
from servers import copy_app, start_server, train_studies

from cineprop.checkpoints import FORMAT

pytestmark = pytest.mark.slow

VIEWER = "http://127.0.0.1:3000"
LIMITS = {"upload_seconds": "10", "upload_memory_mb": "100", "upload_max_mb": "0", "cors_origins": VIEWER}


def launch(root, conf: dict | None = None):
    """A server on a copy of the app and ``train_studies(root)``, TMPDIR ``root/tmp``; returns it."""
    studies, _, checkpoint = train_studies(root)
    (root / "tmp").mkdir()
    app_dir = copy_app(root / "app")
    conf = {"method": "model", "checkpoint": str(checkpoint), "preload": "false", **(conf or {})}
    return start_server(studies, conf=conf, app_dir=app_dir, log_path=root / "server.log",
                        env={"TMPDIR": str(root / "tmp")})


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory):
    server = launch(tmp_path_factory.mktemp("limits"), LIMITS)
    try:
        yield server
    finally:
        server.stop()


def support(server) -> bytes:
    return (server.studies / "labels" / "support" / "study0.nii.gz").read_bytes()


def test_slow_and_memory_hungry_uploads_are_stopped(limits_server, tmp_path):
    server, snap = limits_server, Snapshot(limits_server)
    studies_before = snap.studies()
    slow = zip_of_zeros(tmp_path / "slow.zip", "f0.dcm", 60)  # a DICOM parser chews on this for a minute
    hungry = tmp_path / "hungry.nii.gz"  # a valid all-zero 512³ volume: 512 MiB as float32
    header = nib.Nifti1Header()
    header.set_data_shape((512, 512, 512))
    header.set_data_dtype(np.uint8)
    with gzip.open(hungry, "wb", compresslevel=1) as f:
        f.write(header.binaryblock + b"\0" * 4)
        for _ in range(128):
            f.write(b"\0" * (1 << 20))
    for path, expected in ((slow, "longer than this server's limit of 10 s"), (hungry, "more memory")):
        start = time.monotonic()
        with open(path, "rb") as f:
            r = requests.put(f"{server.url}/datastore/image", params={"image": "attack"}, timeout=120,
                             files={"file": (path.name, f)})
        assert r.status_code == 413 and expected in r.json()["detail"], r.text
        assert time.monotonic() - start < 30, f"{path.name}: answered after {time.monotonic() - start:.0f} s"
    assert snap.studies() == studies_before
    snap.assert_nothing_outside()


def test_uploads_run_off_the_event_loop(limits_server, tmp_path):
    import threading

    server = limits_server
    slow = zip_of_zeros(tmp_path / "slow.zip", "f0.dcm", 60)
    done = {}

    def upload():
        with open(slow, "rb") as f:
            done["status"] = requests.put(f"{server.url}/datastore/image", params={"image": "slow"}, timeout=120,
                                          files={"file": ("slow.zip", f)}).status_code

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(1.0)  # the upload is being checked now
    start = time.monotonic()
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    latency = time.monotonic() - start
    thread.join()
    assert done["status"] == 413 and latency < 2.0, (done, latency)


def test_only_the_configured_origin_gets_cors(limits_server):
    server = limits_server
    r = requests.options(f"{server.url}/info/", timeout=30,
                         headers={"Origin": VIEWER, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 200 and r.headers.get("access-control-allow-origin") == VIEWER, (r.status_code, r.headers)
    r = requests.get(f"{server.url}/info/", headers={"Origin": VIEWER}, timeout=30)
    assert r.status_code == 200 and r.headers.get("access-control-allow-origin") == VIEWER
    r = requests.options(f"{server.url}/info/", timeout=30,
                         headers={"Origin": "http://127.0.0.1:3001", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_is_refused_not_run(limits_server):
    server, snap = limits_server, Snapshot(limits_server)
    marker = server.studies.parent / "code_ran"
    published = server.app_dir / "model" / "cineprop.pt"  # what the server serves once training publishes it
    torch.save({"format": FORMAT, "kind": "image", "meta": _RunsCode(marker)}, published)
    snap = Snapshot(server)
    try:
        r = requests.post(f"{server.url}/infer/cineprop", params={"image": "study0", "output": "json"}, timeout=300,
                          files={"label": ("s.nii.gz", support(server)), "params": (None, "{}")})
        assert r.status_code == 503 and "refused" in r.json()["detail"] and "posix.system" in r.json()["detail"], r.text
        assert not marker.exists()
    finally:
        published.unlink()
    snap.assert_nothing_outside()


def ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # exited; its new parent has not reaped it yet
    except psutil.NoSuchProcess:
        return True


def test_training_ends_with_a_killed_server(tmp_path):
    server = launch(tmp_path)
    try:
        r = requests.post(f"{server.url}/train/cineprop_relearn", json={"steps": 100000}, timeout=60)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 180
        while "cineprop_relearn: request" not in server.log_path.read_text(errors="replace"):  # the task is training
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        task = next(p for p in psutil.Process(server.process.pid).children(recursive=True)
                    if "monailabel.interfaces.utils.app" in " ".join(p.cmdline()))
        os.kill(server.process.pid, signal.SIGKILL)  # the server only: its children stay
        deadline = time.monotonic() + 20
        while not ended(task):
            assert time.monotonic() < deadline, f"training subprocess {task.pid} still running 20 s after its server died"
            time.sleep(0.2)
    finally:
        server.stop()
    assert not (server.app_dir / "model" / "cineprop.pt").exists()  # nothing published after the server died
