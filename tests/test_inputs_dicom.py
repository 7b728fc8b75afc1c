"""DICOM cines: multi-frame ultrasound/XA objects and MR cine series, checked against SimpleITK's reader."""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from inputs_factory import (multiframe_frames, mr_series_frames, write_enhanced_mr, write_mr_series,
                            write_multiframe)

from cineprop.errors import InputError
from cineprop.io import ingest, read_any


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def copy_frame(paths, trigger, folder):
    """Copy the files of one trigger time (every slice position of one frame) into ``folder``."""
    folder.mkdir()
    for p in paths:
        if abs(float(pydicom.dcmread(p, stop_before_pixels=True).TriggerTime) - trigger) < 1e-6:
            shutil.copy(p, folder / p.name)
    return folder


# ---- multi-frame objects ------------------------------------------------------------------------------------

@pytest.mark.parametrize("colour", [None, "RGB", "YBR_FULL"])
def test_multiframe_grey_and_colour(tmp_path, colour):
    frames = multiframe_frames()  # T×rows×cols = 6×20×24, a square moving right
    path = write_multiframe(tmp_path / "us.dcm", frames, colour=colour)
    result = ingest(path)
    volume = result.volume
    assert result.kind == "dicom" and volume.shape == (24, 20, 6)  # i (columns) × j (rows) × T
    np.testing.assert_allclose(volume.array, frames.transpose(2, 1, 0), atol=1e-3)
    # frame order kept: the square's left edge moves 2 px right per frame
    left = [int(np.argmax(volume.array[:, 7, t] > 150)) for t in range(6)]
    assert left == [2, 4, 6, 8, 10, 12]
    # PhysicalDeltaX/Y 0.03/0.02 cm → 0.3 mm along columns (i), 0.2 mm along rows (j); FrameTime 40 ms
    assert volume.geometry.spacing == pytest.approx((0.3, 0.2, 40.0))
    assert volume.geometry.direction == tuple(np.eye(3).ravel())
    assert "SequenceOfUltrasoundRegions" in result.description and "40 ms" in result.description


def test_multiframe_pixels_match_simpleitk(tmp_path):
    frames = multiframe_frames(t=4)
    path = write_multiframe(tmp_path / "xa.dcm", frames, spacing="pixel")
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    np.testing.assert_array_equal(read_any(path).array, reference)


@pytest.mark.parametrize("spacing, expected", [("pixel", (0.5, 0.4)), ("imager", (0.25, 0.3)), ("none", (1.0, 1.0))])
def test_multiframe_spacing_sources(tmp_path, spacing, expected):
    path = write_multiframe(tmp_path / "x.dcm", multiframe_frames(t=3), spacing=spacing, frame_time=None,
                            CineRate=25)
    volume = read_any(path)
    assert volume.geometry.spacing == pytest.approx(expected + (40.0,))  # CineRate 25/s → 40 ms


# ---- MR cine series ------------------------------------------------------------------------------------------

def test_mr_series_4d_matches_simpleitk(tmp_path):
    frames = mr_series_frames(z=3, t=5)  # Z×T×rows×cols, pixel [0,0] = 100 z + 10 t
    paths, _ = write_mr_series(tmp_path / "series", frames, rescale=(2.0, -100.0))  # shuffled file order
    result = ingest(tmp_path / "series")
    volume = result.volume
    assert volume.shape == (22, 18, 3, 5)
    np.testing.assert_array_equal(volume.array[0, 0], (100 * np.arange(3)[:, None] + 10 * np.arange(5)) * 2.0 - 100)
    np.testing.assert_allclose(volume.array, frames.transpose(3, 2, 0, 1) * 2.0 - 100)
    g = volume.geometry
    assert g.spacing == pytest.approx((1.5, 1.25, 8.0, 33.5))
    direction = np.asarray(g.direction).reshape(4, 4)
    for t, trigger in ((0, 0.0), (4, 134.0)):
        reference = sitk_series(copy_frame(paths, trigger, tmp_path / f"t{t}"))
        np.testing.assert_allclose(g.origin[:3], reference.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(g.spacing[:3], reference.GetSpacing(), atol=1e-4)
        np.testing.assert_allclose(direction[:3, :3].ravel(), reference.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(volume.array[:, :, :, t], sitk.GetArrayFromImage(reference).transpose(2, 1, 0))
    np.testing.assert_array_equal(direction[3], [0, 0, 0, 1])
    assert "3 slice positions × 5 frames" in result.description and "33.5 ms" in result.description


def test_mr_series_one_position_is_3d_in_place(tmp_path):
    frames = mr_series_frames(z=1, t=6)
    paths, _ = write_mr_series(tmp_path / "series", frames, names="slice_{}.dcm")
    volume = read_any(tmp_path / "series")
    assert volume.shape == (22, 18, 6)
    np.testing.assert_array_equal(volume.array[0, 0], 10 * np.arange(6))
    first = next(p for p in paths if float(pydicom.dcmread(p).TriggerTime) == 0)
    reference = sitk.ReadImage(str(first))  # one file: the plane of frame 0 as SimpleITK places it
    np.testing.assert_allclose(volume.geometry.origin, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.direction, reference.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(volume.geometry.spacing[:2], reference.GetSpacing()[:2])
    assert volume.geometry.spacing[2] == pytest.approx(33.5)


def test_series_without_trigger_time_uses_instance_number(tmp_path):
    frames = mr_series_frames(z=1, t=4)
    paths, _ = write_mr_series(tmp_path / "s", frames)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.TriggerTime
        ds.save_as(p)
    volume = read_any(tmp_path / "s")
    np.testing.assert_array_equal(volume.array[0, 0], [0, 10, 20, 30])
    assert volume.geometry.spacing[2] == 1.0  # frame interval unknown


def test_enhanced_multiframe_equals_the_series(tmp_path):
    frames = mr_series_frames(z=2, t=4)
    write_mr_series(tmp_path / "series", frames)
    series = read_any(tmp_path / "series")
    enhanced = read_any(write_enhanced_mr(tmp_path / "enhanced.dcm", frames))
    np.testing.assert_array_equal(enhanced.array, series.array)
    for name in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(enhanced.geometry, name), getattr(series.geometry, name), atol=1e-6)


def test_folder_skips_non_dicom_files_and_nests(tmp_path):
    frames = mr_series_frames(z=2, t=3)
    write_mr_series(tmp_path / "export" / "DICOM" / "S1", frames)
    (tmp_path / "export" / "README.txt").write_text("exported by a scanner")
    (tmp_path / "export" / "DICOMDIR").write_bytes(b"\0" * 200)
    assert read_any(tmp_path / "export").shape == (22, 18, 2, 3)


# ---- bad inputs: one clear InputError naming the input; the input is never modified ----------------------------

def test_truncated_and_random_files(tmp_path):
    good = write_multiframe(tmp_path / "good.dcm", multiframe_frames())
    data = good.read_bytes()
    for name, content in (("cut.dcm", data[: int(len(data) * 0.7)]), ("cut_header.dcm", data[:300]),
                          ("noise.dcm", np.random.default_rng(0).bytes(4000))):
        bad = tmp_path / name
        bad.write_bytes(content)
        before = sha(bad)
        with pytest.raises(InputError, match=f"{name}: ") as info:
            read_any(bad)
        assert "\n" not in str(info.value)
        assert sha(bad) == before


def test_no_pixel_data(tmp_path):
    path = write_multiframe(tmp_path / "report.dcm", multiframe_frames())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(InputError, match="report.dcm: DICOM file has no pixel data"):
        read_any(path)


def test_one_bit_header_over_byte_pixels_is_refused(tmp_path):
    path = write_multiframe(tmp_path / "bits.dcm", multiframe_frames(t=3))
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0       # the pixel data still holds a byte per pixel
    ds.save_as(path)
    before = sha(path)
    with pytest.raises(InputError, match="bits.dcm: BitsAllocated is 1, but the pixel data holds"):
        read_any(path)
    assert sha(path) == before


def test_single_frame_is_not_a_cine(tmp_path):
    path = write_multiframe(tmp_path / "still.dcm", multiframe_frames(t=1))
    with pytest.raises(InputError, match="still.dcm: not a cine: 1 frame"):
        read_any(path)


@pytest.mark.parametrize("header, message", [
    (dict(Rows=60000, Columns=60000), "exceed the limit of 4096 px per side"),
    (dict(NumberOfFrames=5_000_000), "frames exceed the limit"),
    (dict(Rows=4000, Columns=4000, NumberOfFrames=4000), "voxels exceed the limit"),
])
def test_huge_header_refused_before_decoding(tmp_path, header, message):
    path = write_multiframe(tmp_path / "huge.dcm", multiframe_frames(t=2), **header)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=message):
            read_any(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing near the header's size was allocated


def test_compressed_without_decoder(tmp_path):
    from pydicom.encaps import encapsulate

    path = write_multiframe(tmp_path / "jls.dcm", multiframe_frames(t=2), syntax="1.2.840.10008.1.2.4.80",
                            pixel_bytes=encapsulate([b"\xff\xd8\xff\xf7" + b"\0" * 60] * 2))
    with pytest.raises(InputError, match="jls.dcm: pixel data is compressed as JPEG-LS Lossless.*no installed decoder"):
        read_any(path)


def test_nan_in_float_pixel_data(tmp_path):
    frames = multiframe_frames(t=3).astype(np.float32)
    frames[1, 2, 3] = np.nan
    path = write_multiframe(tmp_path / "map.dcm", multiframe_frames(t=3), pixel_bytes=b"")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.BitsAllocated = 32
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.FloatPixelData = frames.astype("<f4").tobytes()
    ds.save_as(path)
    with pytest.raises(InputError, match="map.dcm: pixel data contains NaN"):
        read_any(path)


def test_empty_folder_and_mixed_series(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: folder holds neither DICOM files nor frame images"):
        read_any(tmp_path / "empty")
    write_mr_series(tmp_path / "two", mr_series_frames(z=1, t=3), names="a{}.dcm")
    write_mr_series(tmp_path / "two", mr_series_frames(z=1, t=3), names="b{}.dcm")
    with pytest.raises(InputError, match="two: holds 2 DICOM series; give one series per folder"):
        read_any(tmp_path / "two")


def test_inconsistent_series(tmp_path):
    paths, _ = write_mr_series(tmp_path / "missing", mr_series_frames(z=2, t=3), shuffle_seed=None)
    paths[-1].unlink()  # the last frame of one position
    with pytest.raises(InputError, match="missing: slice positions have different numbers of frames"):
        read_any(tmp_path / "missing")
    paths, _ = write_mr_series(tmp_path / "dup", mr_series_frames(z=1, t=3), shuffle_seed=None)
    ds = pydicom.dcmread(paths[1])
    ds.TriggerTime, ds.SOPInstanceUID = "0", pydicom.uid.generate_uid()
    ds.save_as(paths[1])
    with pytest.raises(InputError, match="dup: .* have the same slice position and TriggerTime 0"):
        read_any(tmp_path / "dup")
    paths, _ = write_mr_series(tmp_path / "tilt", mr_series_frames(z=1, t=3), shuffle_seed=None)
    ds = pydicom.dcmread(paths[2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.save_as(paths[2])
    with pytest.raises(InputError, match="tilt: .* have different orientation"):
        read_any(tmp_path / "tilt")
