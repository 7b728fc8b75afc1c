"""``cineprop batch`` on a real local Ray instance: outputs, manifest, resume, retries after a worker dies.

Ray is started twice in this module: once by the CLI itself (the default, owned by the job; interrupted
with Ctrl-C while it starts), then once for the remaining tests (module fixture). Every Ray process is
checked gone at the end.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from cineprop.batch import BatchConfig, run_batch
from cineprop.batch.manifest import committed, read_lines
from cineprop.batch.work import CRASH_EXIT_CODE
from cineprop.cli import main
from cineprop.errors import CinepropError
from cineprop.io import Cine, Geometry, Volume, read_image, read_label, write_image, write_label
from cineprop.methods import build_propagator
from cineprop.support import SupportSet
from cineprop.synthetic import moving_shapes
from ray_helpers import ray_processes

ray = pytest.importorskip("ray")
# The tests of this module are the steps of one scenario on one machine's Ray, in file order (the CLI's own
# Ray is interrupted first, then a module-wide instance serves the rest); under `--random-order` the module's
# place in the suite is shuffled, its steps are not.
pytestmark = [pytest.mark.timeout(150), pytest.mark.random_order(disabled=True)]

#: Cines with a one-shot support (frame 0 painted), plus one with an empty support and one without any.
PAINTED = ["c0", "c1", "c2", "c3"]


def _wait_gone(timeout: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """DATA_DIR with c0..c3 (+ ID_label painted on frame 0), ``empty`` (all-zero label), ``unpainted`` (no label)."""
    root = tmp_path_factory.mktemp("cohort")
    data = root / "data"
    c, s = np.cos(0.2), np.sin(0.2)
    geometry = Geometry((0.8, 0.9, 3.0), (-5.0, 12.5, 1.0), (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    truth, expected = {}, {}
    for k, name in enumerate(PAINTED + ["empty", "unpainted"]):
        frames, labels = moving_shapes(40, 48, 8, labels=2, seed=10 + k)
        write_image(data / f"{name}.nii.gz", frames, geometry)
        support = np.zeros_like(labels)
        if name in PAINTED:
            support[:, :, 0] = labels[:, :, 0]
        if name != "unpainted":
            write_label(data / f"{name}_label.nii.gz", support, Volume(frames, geometry))
        truth[name] = labels
        if name in PAINTED:
            cine = Cine(frames, (0.8, 0.9), name)
            expected[name] = build_propagator("flow").propagate(cine, SupportSet.from_labels(support)).labels
    return {"root": root, "data": data, "truth": truth, "expected": expected, "geometry": geometry}


def _manifest(out: Path) -> dict[str, dict]:
    import csv

    with (out / "manifest.csv").open(newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def _check_outputs(out: Path, cohort: dict) -> None:
    for name in PAINTED:
        image = read_image(cohort["data"] / f"{name}.nii.gz")
        result = read_label(out / f"{name}.nii.gz", like=image)
        assert result.geometry == image.geometry
        truth = cohort["truth"][name]
        np.testing.assert_array_equal(result.array[:, :, 0], truth[:, :, 0])  # the painted frame is kept
        assert set(np.unique(result.array)) <= {0, 1, 2}
        assert all(result.array[:, :, t].any() for t in range(truth.shape[2]))
        np.testing.assert_array_equal(result.array, cohort["expected"][name])  # what the method gives in-process
    assert not list(out.glob(".*.tmp*")), "temporary files left behind"


def _new_ray_sessions(before: set[str]) -> set[str]:
    """Ray session folders (``$TMPDIR/ray/session_*``) not in ``before``."""
    import tempfile
    from pathlib import Path

    return {p.name for p in (Path(tempfile.gettempdir()) / "ray").glob("session_2*")} - before


def test_ctrl_c_while_ray_starts_stops_everything(cohort):
    """The CLI starts its own Ray; Ctrl-C (SIGINT) during startup exits 130 and leaves no process behind."""
    assert not ray.is_initialized()
    out = cohort["root"] / "interrupted"
    sessions = _new_ray_sessions(set())
    proc = subprocess.Popen([sys.executable, "-m", "cineprop", "batch", str(cohort["data"]), "--support-from",
                             "labels", "--out", str(out), "--workers", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                seen[child.pid] = " ".join(child.cmdline())
        # Ray is starting once its daemons run, or once it has made its session folder (a daemon that
        # detached from the CLI's process tree would not show up as a child)
        if any("raylet" in cmd or "gcs_server" in cmd for cmd in seen.values()) or _new_ray_sessions(sessions):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, sorted(set(seen.values()))[:5], err[-2000:])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (left := [p for p in seen if psutil.pid_exists(p) and
                                                     psutil.Process(p).status() != psutil.STATUS_ZOMBIE]):
        time.sleep(0.5)
    assert not left, f"processes left after Ctrl-C: {[seen[p] for p in left]}"
    assert [e["event"] for e in read_lines(out / ".batch" / "events.jsonl")][-1] == "job_end"


def test_cli_on_running_ray(cohort, local_ray, capsys):
    out = cohort["root"] / "cli"
    rc = main(["batch", str(cohort["data"]), "--support-from", "labels", "--out", str(out), "--workers", "2",
               "--method", "flow", "--quiet"])
    assert rc == 1  # the empty support failed; everything else went on
    rows = _manifest(out)
    assert {i: r["status"] for i, r in rows.items()} == {**{n: "ok" for n in PAINTED}, "empty": "failed",
                                                         "unpainted": "no_support"}
    assert "empty support" in rows["empty"]["error"] and rows["empty"]["attempts"] == "1"  # user error: no retry
    for name in PAINTED:
        row = rows[name]
        assert row["frames"] == "8" and row["support_frames"] == "1" and row["attempts"] == "1"
        assert 0.0 <= float(row["mean_confidence"]) <= 1.0 and int(row["flagged"]) >= 0 and float(row["seconds"]) > 0
    _check_outputs(out, cohort)
    assert not (out / "empty.nii.gz").exists() and not (out / "unpainted.nii.gz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "ray" and summary["workers"] == 2 and summary["ok"] == 4 and summary["failed"] == 1
    assert "4 ok, 1 failed" in capsys.readouterr().out
    assert ray.is_initialized()  # Ray started by someone else is left running


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, object_store_memory=80 * 1024 ** 2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()
    assert not _wait_gone(), "Ray processes left after shutdown"


def _config(cohort: dict, out: str, **kw) -> BatchConfig:
    return BatchConfig(str(cohort["data"]), "labels", str(cohort["root"] / out), method="flow", workers=2,
                       progress=False, **kw)


def test_resume_skips_done_and_redoes_corrupted(cohort, local_ray):
    first = run_batch(_config(cohort, "resume"))
    assert first["ok"] == 4 and first["propagated_now"] == 5
    out = cohort["root"] / "resume"
    mtimes = {n: (out / f"{n}.nii.gz").stat().st_mtime_ns for n in PAINTED}

    again = run_batch(_config(cohort, "resume"))
    assert again["resumed"] and again["already_done"] == 4
    assert again["propagated_now"] == 1 and again["failed_now"] == 1  # only the failed cine is tried again
    assert {n: (out / f"{n}.nii.gz").stat().st_mtime_ns for n in PAINTED} == mtimes

    data = (out / "c2.nii.gz").read_bytes()
    (out / "c2.nii.gz").write_bytes(data[: len(data) // 2])  # a truncated output is not a result
    (out / "c3.nii.gz").unlink()
    third = run_batch(_config(cohort, "resume"))
    assert third["already_done"] == 2 and third["ok_now"] == 2
    assert {n for n in PAINTED if (out / f"{n}.nii.gz").stat().st_mtime_ns != mtimes[n]} == {"c2", "c3"}
    _check_outputs(out, cohort)
    assert _manifest(out)["c2"]["status"] == "ok"

    # the plain loop gives the same labels as the Ray workers
    loop = run_batch(BatchConfig(str(cohort["data"]), "labels", str(cohort["root"] / "loop"), local=True,
                                 progress=False))
    assert loop["mode"] == "local" and loop["ok"] == 4
    for name in PAINTED:
        np.testing.assert_array_equal(read_label(cohort["root"] / "loop" / f"{name}.nii.gz").array,
                                      read_label(out / f"{name}.nii.gz").array)

    with pytest.raises(CinepropError, match="different job"):
        run_batch(BatchConfig(str(cohort["data"]), "labels", str(out), method="copy", local=True, progress=False))


def test_worker_killed_mid_cine_is_retried(cohort, local_ray):
    # Test hook: the worker process exits (os._exit, like a kill) on its 1st attempt at c1, and on every attempt at c2.
    summary = run_batch(_config(cohort, "crash", retries=1, crash_on={"c1": 1, "c2": 99}))
    out = cohort["root"] / "crash"
    rows = _manifest(out)
    assert rows["c1"]["status"] == "ok" and int(rows["c1"]["attempts"]) == 2
    assert rows["c2"]["status"] == "failed" and rows["c2"]["attempts"] == "2"
    assert "worker lost on each of 2 attempts" in rows["c2"]["error"]
    # cines queued behind a dying worker are resubmitted without being charged an attempt
    assert rows["c0"]["status"] == rows["c3"]["status"] == "ok" and rows["c0"]["attempts"] == rows["c3"]["attempts"] == "1"
    # c2 dies twice, c1 once (possibly in the same worker death as one of c2's)
    assert 2 <= summary["workers_lost"] <= 3 and summary["retried"] == 2
    events = [e["event"] for e in read_lines(out / ".batch" / "events.jsonl")]
    assert events.count("worker_lost") == summary["workers_lost"] and "job_end" in events
    # each result was committed (written) exactly once in this run
    journal = [r["id"] for r in read_lines(out / ".batch" / "journal.jsonl") if r["run"] == summary["run"]]
    assert sorted(journal) == ["c0", "c1", "c3"]
    assert set(committed(out / ".batch", summary["run"])) == {"c0", "c1", "c3"}
    image = read_image(cohort["data"] / "c1.nii.gz")
    assert read_label(out / "c1.nii.gz", like=image).geometry == image.geometry
    assert not list(out.glob(".*.tmp*"))
    assert CRASH_EXIT_CODE == 77


def test_bad_checkpoint_stops_the_job_with_one_line(cohort, local_ray, tmp_path):
    config = BatchConfig(str(cohort["data"]), "labels", str(cohort["root"] / "badckpt"), method="model",
                         options={"checkpoint": str(tmp_path / "nope.pt")}, workers=1, progress=False)
    with pytest.raises(CinepropError, match="workers could not start: .*nope.pt"):
        run_batch(config)
