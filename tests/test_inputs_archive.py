"""``.zip`` inputs (``cineprop.io.archive``): a folder's cine through one file; unsafe archives refused."""

from __future__ import annotations

import stat
import zipfile

import numpy as np
import pytest
from inputs_factory import mr_series_frames, write_mr_series, write_png_folder

from cineprop.errors import InputError
from cineprop.io import archive, convert, ingest, read_image


def frames(t=5):
    out = np.full((t, 20, 24), 40, np.uint8)
    for k in range(t):
        out[k, 4:10, 2 + 2 * k: 8 + 2 * k] = 200
    return out


def zip_folder(folder, path, inside=True):
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, (f"{folder.name}/" if inside else "") + str(f.relative_to(folder)))
    return path


@pytest.mark.parametrize("inside", [True, False])
def test_frame_folder_zip_reads_like_the_folder(tmp_path, inside):
    folder = write_png_folder(tmp_path / "frames", frames(), [f"f{i}.png" for i in range(5)])
    zipped = zip_folder(folder, tmp_path / "frames.zip", inside)
    np.testing.assert_array_equal(ingest(zipped).volume.array, ingest(folder).volume.array)
    _, volume = convert(zipped, tmp_path / "out.nii.gz")
    assert read_image(tmp_path / "out.nii.gz").shape == volume.shape == (24, 20, 5)


def test_dicom_series_zip_keeps_geometry(tmp_path):
    write_mr_series(tmp_path / "sax", mr_series_frames(z=2, t=3))
    direct, zipped = ingest(tmp_path / "sax"), ingest(zip_folder(tmp_path / "sax", tmp_path / "sax.zip"))
    assert zipped.kind == "dicom" and zipped.volume.geometry == direct.volume.geometry
    np.testing.assert_array_equal(zipped.volume.array, direct.volume.array)
    assert "sax.zip" in zipped.description and str(tmp_path / "sax.zip") == zipped.volume.path


def refused(path, words):
    with pytest.raises(InputError) as info:
        ingest(path)
    assert str(info.value).startswith(str(path)) and words in str(info.value), str(info.value)


def test_unsafe_or_broken_archives_are_refused(tmp_path, monkeypatch):
    for name, member in [("up.zip", "../x.png"), ("abs.zip", "/etc/x.png"), ("drive.zip", "C:/x.png")]:
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr(member, b"x")
        refused(tmp_path / name, "outside the archive")
    link = zipfile.ZipInfo("frames/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        z.writestr(link, "/etc/passwd")
    refused(tmp_path / "link.zip", "link")
    folder = write_png_folder(tmp_path / "frames", frames(), [f"f{i}.png" for i in range(5)])
    good = zip_folder(folder, tmp_path / "good.zip")
    monkeypatch.setattr(archive, "MAX_MEMBERS", 4)
    refused(good, "more than the limit of 4")
    monkeypatch.setattr(archive, "MAX_MEMBERS", 100)
    monkeypatch.setattr(archive, "MAX_UNPACKED", 100)
    refused(good, "MiB")
    monkeypatch.undo()
    data = good.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "cut.zip", "zip")
    (tmp_path / "noise.zip").write_bytes(np.random.default_rng(0).bytes(3000))
    refused(tmp_path / "noise.zip", "not a readable zip archive")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    refused(tmp_path / "empty.zip", "empty.zip: folder holds neither")
