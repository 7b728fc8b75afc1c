"""``cineprop convert`` and clinical inputs through the CLI: summary line, geometry, errors that write nothing."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from inputs_factory import (mr_series_frames, multiframe_frames, ultrasound_clip, write_mr_series, write_multiframe,
                            write_png_folder, write_video)

from cineprop.cli import main
from cineprop.io import Volume, load_cines, read_any, read_image, read_label, write_label


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_each_kind(tmp_path, capsys):
    frames = multiframe_frames(t=5)
    inputs = {
        "us.dcm": write_multiframe(tmp_path / "us.dcm", frames, colour="RGB"),
        "series": write_mr_series(tmp_path / "series", mr_series_frames(z=1, t=4))[0][0].parent,
        "clip.mp4": write_video(tmp_path / "clip.mp4", ultrasound_clip(t=4, rows=48, cols=64)[0]),
        "frames": write_png_folder(tmp_path / "frames", frames, [f"f{k}.png" for k in range(5)]),
    }
    for name, source in inputs.items():
        out = tmp_path / f"{name.split('.')[0]}.nii.gz"
        code, stdout, stderr = run(capsys, "convert", source, out)
        assert code == 0 and stderr == ""
        assert stdout.count("\n") == 1 and f"-> {out}" in stdout
        written, original = read_image(out), read_any(source)
        np.testing.assert_allclose(written.array, original.array, atol=1e-4)
        np.testing.assert_allclose(written.geometry.spacing, original.geometry.spacing, rtol=1e-6)
        np.testing.assert_allclose(written.geometry.origin, original.geometry.origin, atol=1e-4)
        np.testing.assert_allclose(written.geometry.direction, original.geometry.direction, atol=1e-6)


def test_convert_slice_lies_where_the_dicom_is(tmp_path, capsys):
    paths, frames = write_mr_series(tmp_path / "series", mr_series_frames(z=3, t=4))
    code, stdout, _ = run(capsys, "convert", tmp_path / "series", tmp_path / "z2.nii.gz", "--slice", "2")
    assert code == 0 and "slice position 2" in stdout and "22×18×4" in stdout
    written = read_image(tmp_path / "z2.nii.gz")
    np.testing.assert_allclose(written.array, frames[2].transpose(2, 1, 0))
    first = next(p for p in paths if pydicom.dcmread(p).InstanceNumber == 3)  # position 2, frame 0
    reference = sitk.ReadImage(str(first))
    np.testing.assert_allclose(written.geometry.origin, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.geometry.direction, reference.GetDirection(), atol=1e-5)
    # a 4D conversion keeps every position; the written file is 4D with the same 3D placement
    run(capsys, "convert", tmp_path / "series", tmp_path / "all.nii.gz")
    assert read_image(tmp_path / "all.nii.gz").shape == (22, 18, 3, 4)


def test_convert_crop(tmp_path, capsys):
    frames, _ = ultrasound_clip(t=6)
    source = write_png_folder(tmp_path / "echo", frames, [f"img_{k}.png" for k in range(6)])
    code, stdout, _ = run(capsys, "convert", source, tmp_path / "auto.nii.gz", "--crop", "auto")
    assert code == 0 and "cropped to rows,columns" in stdout
    code, stdout, _ = run(capsys, "convert", source, tmp_path / "box.nii.gz", "--crop", "20:80,30:100")
    box = read_image(tmp_path / "box.nii.gz")
    assert box.shape == (70, 60, 6) and box.geometry.origin == pytest.approx((30.0, 20.0, 0.0))
    np.testing.assert_array_equal(box.array, frames[:, 20:80, 30:100].transpose(2, 1, 0))


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.dcm", "missing.dcm: file not found"),
    (lambda d: (d / "noise.dcm").write_bytes(b"\1" * 3000) and d / "noise.dcm", "noise.dcm: "),
    (lambda d: (d / "empty").mkdir() or d / "empty", "empty: folder holds neither"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "notes.txt: unsupported input"),
    (lambda d: write_multiframe(d / "still.dcm", multiframe_frames(t=1)), "still.dcm: not a cine"),
])
def test_convert_bad_input_writes_nothing(tmp_path, capsys, make, message):
    source = make(tmp_path)
    out = tmp_path / "out.nii.gz"
    code, stdout, stderr = run(capsys, "convert", source, out)
    assert code == 2 and stdout == ""
    assert stderr.startswith("cineprop convert: error: ") and message in stderr and stderr.count("\n") == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_convert_failure_keeps_existing_output(tmp_path, capsys):
    out = tmp_path / "out.nii.gz"
    write_png_folder(tmp_path / "ok", multiframe_frames(t=3), ["1.png", "2.png", "3.png"])
    assert run(capsys, "convert", tmp_path / "ok", out)[0] == 0
    before = sha(out)
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 500)
    assert run(capsys, "convert", tmp_path / "bad.dcm", out)[0] == 2
    assert run(capsys, "convert", tmp_path / "ok", tmp_path / "out.mp4")[0] == 2  # not a volume format
    assert run(capsys, "convert", tmp_path / "ok", out, "--slice", "1")[0] == 2  # 3D input
    assert sha(out) == before


def test_predict_reads_a_video_and_a_dicom_series_directly(tmp_path, capsys):
    frames, _ = ultrasound_clip(t=5, rows=48, cols=64)
    clip = write_video(tmp_path / "clip.mp4", frames)
    volume, (cine,) = load_cines(clip)
    assert cine.name == "clip" and cine.shape == (64, 48, 5)
    painted = np.zeros(volume.shape, np.uint8)
    painted[20:40, 20:30, 0] = 1
    write_label(tmp_path / "painted.nii.gz", painted, volume)
    code, stdout, stderr = run(capsys, "predict", clip, "--support", tmp_path / "painted.nii.gz",
                               "--out", tmp_path / "labels.nii.gz", "--method", "copy")
    assert code == 0, stderr
    labels = read_label(tmp_path / "labels.nii.gz", like=volume)
    assert labels.array[:, :, 4].sum() == painted[:, :, 0].sum()  # copy propagates frame 0 to every frame
    assert labels.geometry.spacing == pytest.approx(volume.geometry.spacing)

    write_mr_series(tmp_path / "series", mr_series_frames(z=2, t=3))
    volume, cines = load_cines(tmp_path / "series", slice_index=1)
    assert [c.name for c in cines] == ["series_z1"] and cines[0].spacing == (1.5, 1.25)
    assert isinstance(volume, Volume) and volume.shape == (22, 18, 2, 3)
