"""Cine I/O: geometry round trips, 4D split/assemble, atomic writes and every bad input."""

from __future__ import annotations

import hashlib
import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from cineprop.errors import InputError
from cineprop.io import (Geometry, Volume, assemble_labels, cines_from_volume, load_cines, load_labelled_cine,
                         read_image, read_label, read_volume_header, write_image, write_label)
from cineprop.io.atomic import atomic_path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".nii"])
def test_roundtrip_keeps_geometry_and_values(tmp_path, synthetic, geometry3d, suffix):
    frames, labels = synthetic
    path = write_image(tmp_path / f"img{suffix}", frames, geometry3d)
    volume = read_image(path)
    assert volume.shape == frames.shape
    np.testing.assert_allclose(volume.array, frames, atol=1e-6)
    np.testing.assert_allclose(volume.geometry.spacing, geometry3d.spacing, atol=1e-6)
    np.testing.assert_allclose(volume.geometry.origin, geometry3d.origin, atol=1e-5)
    np.testing.assert_allclose(volume.geometry.direction, geometry3d.direction, atol=1e-6)
    out = write_label(tmp_path / f"lab{suffix}", labels, volume)
    back = read_label(out, like=volume)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.geometry.direction, geometry3d.direction, atol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, geometry3d.origin, atol=1e-5)
    # the file on disk is uint8, so it overlays in Slicer as a labelmap
    assert sitk.ReadImage(str(out)).GetPixelID() == sitk.sitkUInt8


def test_index_order_matches_nibabel(tmp_path, synthetic, geometry3d):
    import nibabel as nib

    frames, _ = synthetic
    path = write_image(tmp_path / "img.nii.gz", frames, geometry3d)
    np.testing.assert_allclose(np.asarray(nib.load(str(path)).dataobj), frames, atol=1e-6)


def test_4d_split_and_assemble(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.random((20, 24, 3, 6)).astype(np.float32)
    geometry = Geometry((1.5, 1.25, 8.0, 0.04), (1.0, 2.0, 3.0, 0.0), tuple(np.eye(4).ravel()))
    path = write_image(tmp_path / "cine4d.nii.gz", array, geometry)
    volume, cines = load_cines(path)
    assert [c.slice_index for c in cines] == [0, 1, 2]
    assert cines[1].shape == (20, 24, 6) and cines[1].spacing == (1.5, 1.25)
    np.testing.assert_allclose(cines[2].frames, array[:, :, 2, :])
    _, only = load_cines(path, slice_index=1)
    assert len(only) == 1 and only[0].name == "cine4d_z1"
    labels = (only[0].frames > 0.5).astype(np.uint8)
    full = assemble_labels(volume, [(only[0], labels)])
    assert full.shape == array.shape and full[:, :, [0, 2], :].sum() == 0
    np.testing.assert_array_equal(full[:, :, 1, :], labels)
    out = write_label(tmp_path / "lab4d.nii.gz", full, volume)
    back = read_label(out, like=volume)
    assert back.geometry == volume.geometry or np.allclose(back.geometry.spacing, geometry.spacing)
    with pytest.raises(InputError, match="outside 0..2"):
        load_cines(path, slice_index=3)


def test_labelled_cine_pairs(synthetic_files, synthetic):
    image, label = synthetic_files
    volume, pairs = load_labelled_cine(image, label)
    (cine, labels), = pairs
    assert cine.spacing == pytest.approx((0.7, 0.9))
    np.testing.assert_array_equal(labels, synthetic[1])


# ---- bad inputs: a clear one-line error naming the file, input never modified -------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.nii.gz: file not found"):
        read_image(tmp_path / "nope.nii.gz")


def test_folder_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "x.txt")


def test_random_bytes(tmp_path):
    bad = tmp_path / "noise.nii.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    before = sha(bad)
    with pytest.raises(InputError, match="noise.nii.gz: not a readable image"):
        read_image(bad)
    assert sha(bad) == before


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_the_header_alone_says_what_the_full_read_finds(tmp_path, synthetic, geometry3d, suffix):
    """One header reader serves the volume reader, the batch output check and the upload size limit."""
    from cineprop.io.limited import declared_bytes

    path = write_image(tmp_path / f"img{suffix}", synthetic[0][:, :, :7], geometry3d)
    header, volume = read_volume_header(path), read_image(path)
    assert header.size == volume.shape == (48, 56, 7) and header.components == 1
    assert header.geometry == volume.geometry
    assert declared_bytes(path, "volume") == 48 * 56 * 7 * 4
    bad = tmp_path / "noise.nii.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(InputError, match="noise.nii.gz: not a readable image"):
        read_volume_header(bad)
    assert declared_bytes(bad, "volume") is None


def test_truncated_file(tmp_path, synthetic, geometry3d):
    path = write_image(tmp_path / "img.nii", synthetic[0], geometry3d)
    data = path.read_bytes()
    cut = tmp_path / "cut.nii"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.nii: .*(truncated|corrupt|not a readable)"):
        read_image(cut)
    gz = tmp_path / "cut.nii.gz"
    gz.write_bytes(gzip.compress(data)[:-500])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_image(gz)


def test_huge_header_refused_before_reading(tmp_path):
    header = tmp_path / "huge.nhdr"
    header.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 50\nendian: little\nencoding: raw\n"
                      "data file: huge.raw\n")
    (tmp_path / "huge.raw").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="exceed the limit"):
        read_image(header)


def test_nan_intensities(tmp_path, synthetic, geometry3d):
    frames = synthetic[0].copy()
    frames[3, 4, 5] = np.nan
    path = write_image(tmp_path / "nan.nii.gz", frames, geometry3d)
    with pytest.raises(InputError, match="nan.nii.gz: image contains NaN"):
        read_image(path)


def test_single_frame_and_2d(tmp_path, geometry3d):
    path = write_image(tmp_path / "one.nii.gz", np.zeros((16, 16, 1), np.float32), geometry3d)
    with pytest.raises(InputError, match="one.nii.gz: a cine needs at least 2 frames"):
        load_cines(path)
    flat = sitk.GetImageFromArray(np.zeros((16, 16), np.float32))
    sitk.WriteImage(flat, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="expected a 3D"):
        read_image(tmp_path / "flat.nii.gz")


def test_label_problems(tmp_path, synthetic, geometry3d):
    frames, labels = synthetic
    volume = Volume(frames, geometry3d)
    wrong = write_image(tmp_path / "wrong.nii.gz", np.zeros((10, 10, 4), np.float32), geometry3d)
    with pytest.raises(InputError, match=r"wrong.nii.gz: label shape \(10, 10, 4\) differs"):
        read_label(wrong, like=volume)
    frac = write_image(tmp_path / "frac.nii.gz", labels.astype(np.float32) * 0.5, geometry3d)
    with pytest.raises(InputError, match="non-integer"):
        read_label(frac, like=volume)
    big = sitk.GetImageFromArray((labels.astype(np.int16) * 200).transpose(2, 1, 0))
    sitk.WriteImage(big, str(tmp_path / "big.nii.gz"))
    with pytest.raises(InputError, match=r"label values must be in 0..255, found 0..400"):
        read_label(tmp_path / "big.nii.gz", like=volume)
    neg = sitk.GetImageFromArray((-labels.astype(np.int16)).transpose(2, 1, 0))
    sitk.WriteImage(neg, str(tmp_path / "neg.nii.gz"))
    with pytest.raises(InputError, match="label values must be in"):
        read_label(tmp_path / "neg.nii.gz")


def test_atomic_write_failure_leaves_target_untouched(tmp_path):
    target = tmp_path / "keep.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]


def test_write_label_refuses_wrong_shape_and_keeps_old_file(tmp_path, synthetic, geometry3d):
    frames, labels = synthetic
    volume = Volume(frames, geometry3d)
    out = write_label(tmp_path / "out.nii.gz", labels, volume)
    before = sha(out)
    with pytest.raises(InputError, match="differs from image shape"):
        write_label(out, labels[:, :, :3], volume)
    assert sha(out) == before


def test_cines_from_volume_names(synthetic, geometry3d):
    (cine,) = cines_from_volume(Volume(synthetic[0], geometry3d, "/x/study7.nii.gz"))
    assert cine.name == "study7" and cine.slice_index is None


def test_atomic_write_modes(tmp_path):
    from cineprop.io import atomic_write_text

    new = atomic_write_text(tmp_path / "new.json", "{}")
    assert new.stat().st_mode & 0o777 == 0o644
    new.chmod(0o640)
    atomic_write_text(new, "[]")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_text() == "[]"
