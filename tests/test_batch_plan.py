"""Batch planning, manifest, journal and the plain loop: everything of ``cineprop batch`` that needs no Ray."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cineprop.batch import BatchConfig, plan_jobs, read_ids, run_batch
from cineprop.batch.manifest import FIELDS, Manifest, append_line, read_lines
from cineprop.batch.plan import CineJob, output_problem, remove_stale_temporaries
from cineprop.cli import main
from cineprop.errors import CinepropError, InputError
from cineprop.io import Geometry, Volume, read_label, write_image, write_label
from cineprop.synthetic import moving_shapes


def _write_cine(folder, name, support=True, geometry=None, frames_painted=(0,)):
    frames, labels = moving_shapes(32, 36, 6, labels=1, seed=len(name))
    geometry = geometry or Geometry.identity(3)
    write_image(folder / f"{name}.nii.gz", frames, geometry)
    painted = np.zeros_like(labels)
    for t in frames_painted:
        painted[:, :, t] = labels[:, :, t]
    if support:
        write_label(folder / f"{name}_label.nii.gz", painted, Volume(frames, geometry))
    return frames, painted


def test_plan_labels_and_support_dir(tmp_path):
    data, sup = tmp_path / "data", tmp_path / "support"
    for name in ("a", "b", "c"):
        _write_cine(data, name, support=name != "c")
    jobs = {j.id: j for j in plan_jobs(data, "labels", tmp_path / "out")}
    assert sorted(jobs) == ["a", "b", "c"]  # *_label files are not cines
    assert jobs["a"].support.endswith("a_label.nii.gz") and jobs["a"].output == str(tmp_path / "out" / "a.nii.gz")
    assert jobs["c"].problem.startswith("no support volume") and jobs["c"].problem_status == "no_support"

    sup.mkdir()
    (sup / "a.nii.gz").write_bytes((data / "a_label.nii.gz").read_bytes())
    (sup / "b_label.nii.gz").write_bytes((data / "b_label.nii.gz").read_bytes())
    (sup / "b.nii.gz").write_bytes((data / "b_label.nii.gz").read_bytes())
    jobs = {j.id: j for j in plan_jobs(data, str(sup), tmp_path / "out", ids=["b", "a"])}
    assert list(jobs) == ["b", "a"] and jobs["a"].support == str(sup / "a.nii.gz")
    assert "several support volumes" in jobs["b"].problem and jobs["b"].problem_status == "failed"

    with pytest.raises(InputError, match="must not be an input folder"):
        plan_jobs(data, "labels", data)
    with pytest.raises(InputError, match="requested cine"):
        plan_jobs(data, "labels", tmp_path / "out", ids=["zzz"])
    with pytest.raises(InputError, match="support folder not found"):
        plan_jobs(data, str(tmp_path / "nowhere"), tmp_path / "out")
    assert [j.id for j in plan_jobs(data, "labels", tmp_path / "out", limit=2)] == ["a", "b"]


def test_read_ids(tmp_path):
    split = tmp_path / "splits.csv"
    split.write_text("sequence,split\nx1,test\nx2,train\nx3,test\n")
    assert read_ids(split, "test") == ["x1", "x3"] and read_ids(split) == ["x1", "x2", "x3"]
    listing = tmp_path / "ids.txt"
    listing.write_text("# cohort A\nx2\n\nx1\nx2\n")
    assert read_ids(listing) == ["x2", "x1"]
    with pytest.raises(InputError, match="no ids in split 'val'"):
        read_ids(split, "val")
    with pytest.raises(InputError, match="--split needs a CSV"):
        read_ids(listing, "test")


def test_output_problem(tmp_path):
    data = tmp_path / "d"
    frames, painted = _write_cine(data, "a")
    job = CineJob("a", str(data / "a.nii.gz"), str(data / "a_label.nii.gz"), str(tmp_path / "o" / "a.nii.gz"))
    assert output_problem(job) == "no output file"
    write_label(job.output, painted, Volume(frames, Geometry.identity(3)))
    assert output_problem(job) is None
    shifted = Geometry((1.0, 1.0, 1.0), (5.0, 0.0, 0.0), Geometry.identity(3).direction)
    write_label(job.output, painted, Volume(frames, shifted))
    assert output_problem(job) == "output geometry differs from the cine's"
    write_label(job.output, painted[:, :, :3], Volume(frames[:, :, :3], Geometry.identity(3)))
    assert "differs from the cine's" in output_problem(job)
    data_bytes = (data / "a_label.nii.gz").read_bytes()
    (tmp_path / "o" / "a.nii.gz").write_bytes(data_bytes[: len(data_bytes) // 3])
    assert output_problem(job) is not None
    (tmp_path / "o" / ".a.x1y2.tmp.nii.gz").write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path / "o") == 1


def test_manifest_and_journal(tmp_path):
    manifest = Manifest(tmp_path / "m.csv", flush_seconds=3600)
    manifest.record({"id": "b", "status": "ok", "mean_confidence": 0.912345, "flagged_frames": [3, 4]})
    manifest.record({"id": "a", "status": "failed", "error": "x: bad\nsecond line"})
    assert not (tmp_path / "m.csv").exists() or len((tmp_path / "m.csv").read_text().splitlines()) <= 2
    manifest.flush()
    with (tmp_path / "m.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["a", "b"] and list(rows[0]) == FIELDS
    assert rows[1]["mean_confidence"] == "0.9123" and rows[1]["flagged_frames"] == "3 4"
    assert rows[0]["error"] == "x: bad second line"
    assert Manifest.load(tmp_path / "m.csv").counts() == {"ok": 1, "failed": 1}
    (tmp_path / "bad.csv").write_text("garbage\n1\n")
    with pytest.raises(InputError, match="--redo"):
        Manifest.load(tmp_path / "bad.csv")

    log = tmp_path / "j.jsonl"
    append_line(log, {"id": "a", "status": "ok"})
    with log.open("a") as fh:
        fh.write('\n{"id": "b", "sta')  # a record torn by a writer that died mid-write
    append_line(log, {"id": "c", "status": "ok"})
    assert [r["id"] for r in read_lines(log)] == ["a", "c"]


def test_local_loop_cli(tmp_path, capsys):
    data = tmp_path / "data"
    for name in ("a", "b"):
        _write_cine(data, name, frames_painted=(0, 5))
    _write_cine(data, "empty", frames_painted=())
    out = tmp_path / "out"
    assert main(["batch", str(data), "--support-from", "labels", "--out", str(out), "--local", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "2 ok, 1 failed" in text and "empty support" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "local" and summary["failures"][0]["id"] == "empty"
    assert read_label(out / "a.nii.gz").shape == (32, 36, 6)
    # resume: nothing left but the failed cine; a different method is refused; --redo starts over
    assert main(["batch", str(data), "--support-from", "labels", "--out", str(out), "--workers", "0", "--quiet"]) == 1
    assert json.loads((out / "summary.json").read_text())["already_done"] == 2
    assert main(["batch", str(data), "--support-from", "labels", "--out", str(out), "--local", "--quiet",
                 "--method", "copy"]) == 2
    assert "different job (method differ" in capsys.readouterr().err
    assert main(["batch", str(data), "--support-from", "labels", "--out", str(out), "--local", "--quiet",
                 "--method", "copy", "--redo"]) == 1
    assert json.loads((out / "summary.json").read_text())["propagated_now"] == 3
    assert main(["batch", str(data), "--support-from", "labels", "--out", str(data), "--local"]) == 2


def test_one_job_per_out_dir(tmp_path):
    import fcntl

    data = tmp_path / "data"
    _write_cine(data, "a")
    lock = tmp_path / "out" / ".batch" / "lock"
    lock.parent.mkdir(parents=True)
    with lock.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another job holds OUT_DIR
        with pytest.raises(CinepropError, match="another cineprop batch job"):
            run_batch(BatchConfig(str(data), "labels", str(tmp_path / "out"), local=True, progress=False))


def test_unreachable_cluster_fails_fast(tmp_path, capsys):
    data = tmp_path / "data"
    _write_cine(data, "a")
    rc = main(["batch", str(data), "--support-from", "labels", "--out", str(tmp_path / "out"),
               "--ray-address", "127.0.0.1:1", "--quiet"])
    assert rc == 2 and "cannot join the Ray cluster at 127.0.0.1:1: nothing answers" in capsys.readouterr().err


class FlakyFlow:
    """``flow`` that raises an unexpected error on its first call for each cine (a transient failure)."""

    name = "flaky"
    seen: set = set()

    def propagate(self, cine, support):
        from cineprop.baselines import FlowPropagator

        if cine.name not in FlakyFlow.seen:
            FlakyFlow.seen.add(cine.name)
            raise OSError("transient read error")
        return FlowPropagator().propagate(cine, support)


def test_local_loop_retries_unexpected_errors(tmp_path):
    from cineprop import methods

    data = tmp_path / "data"
    for name in ("a", "b"):
        _write_cine(data, name)
    methods.register("flaky", f"{__name__}:FlakyFlow", "test double: fails once per cine")
    try:
        summary = run_batch(BatchConfig(str(data), "labels", str(tmp_path / "out"), method="flaky", local=True,
                                        retries=1, progress=False))
        assert summary["ok"] == 2
        with (tmp_path / "out" / "manifest.csv").open(newline="") as fh:
            assert [row["attempts"] for row in csv.DictReader(fh)] == ["2", "2"]
        FlakyFlow.seen.clear()
        summary = run_batch(BatchConfig(str(data), "labels", str(tmp_path / "out0"), method="flaky", local=True,
                                        retries=0, progress=False))
        assert summary["failed"] == 2 and "OSError: transient read error" in summary["failures"][0]["error"]
    finally:
        methods.unregister("flaky")
