"""The ``cineprop`` command end to end: evaluate (report, overlays) and predict, plus one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cineprop.cli import main
from cineprop.io import read_image, read_label, write_label


def test_evaluate_sample_report_and_overlays(tmp_path, sample_dir, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", str(sample_dir), "--method", "flow", "--support", "middle", "--shots", "1",
                 "--out", str(out), "--overlays", str(tmp_path / "png"), "--quiet"]) == 0
    report = json.loads(out.read_text())
    for key in ("method", "support", "shots", "mean_dice", "per_label", "per_sequence", "frames_per_second",
                "peak_memory_mb"):
        assert key in report
    assert report["method"] == "flow" and report["support"] == "middle" and report["sequences"] == 3
    assert set(report["per_label"]) == {"1", "2", "3"}
    assert 0.3 < report["mean_dice"] <= 1.0
    assert report["command"].startswith("cineprop evaluate")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "patient001_frame01.png", "patient022_frame01.png", "patient080_frame01.png"]
    table = capsys.readouterr().out
    assert "mean" in table and "frames/s" in table


def test_evaluate_split_file(tmp_path, sample_dir):
    split = tmp_path / "split.csv"
    split.write_text("sequence,split\npatient001_frame01,test\npatient022_frame01,train\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(sample_dir), "--split-file", str(split), "--split", "test", "--method", "copy",
                 "--out", str(out), "--quiet"]) == 0
    assert [s["id"] for s in json.loads(out.read_text())["per_sequence"]] == ["patient001_frame01"]


def test_predict_writes_labels_with_input_geometry(tmp_path, synthetic_files, synthetic):
    image, label = synthetic_files
    frames, truth = synthetic
    volume = read_image(image)
    painted = np.zeros_like(truth)
    painted[:, :, 4] = truth[:, :, 4]
    support = write_label(tmp_path / "painted.nii.gz", painted, volume)
    out = tmp_path / "pred.nii.gz"
    conf = tmp_path / "conf.json"
    assert main(["predict", str(image), "--support", str(support), "--out", str(out), "--confidence", str(conf),
                 "--method", "flow"]) == 0
    pred = read_label(out, like=volume)
    assert pred.geometry == volume.geometry
    np.testing.assert_array_equal(pred.array[:, :, 4], truth[:, :, 4])
    assert set(np.unique(pred.array)) <= {0, 1, 2}
    (entry,) = json.loads(conf.read_text())
    assert entry["support_frames"] == [4] and len(entry["confidence"]) == frames.shape[2]


@pytest.mark.parametrize("args, message", [
    (["evaluate", "/no/such/folder"], "/no/such/folder: data folder not found"),
    (["predict", "/no/x.nii.gz", "--support", "/no/y.nii.gz", "--out", "/tmp/z.nii.gz"], "/no/x.nii.gz: file not found"),
])
def test_errors_are_one_line_without_traceback(args, message):
    proc = subprocess.run([sys.executable, "-m", "cineprop", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_predict_empty_support_is_an_error(tmp_path, synthetic_files, capsys):
    image, _ = synthetic_files
    volume = read_image(image)
    empty = write_label(tmp_path / "empty.nii.gz", np.zeros(volume.shape, np.uint8), volume)
    assert main(["predict", str(image), "--support", str(empty), "--out", str(tmp_path / "o.nii.gz")]) == 2
    assert "no support" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()
