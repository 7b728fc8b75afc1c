"""Conversions volume ⇄ frame list ⇄ label volume keep geometry and label values.

Cross-checks against independent readers: nibabel's RAS affine (Slicer's convention) and
``cineprop.io`` (what the server uses), so an LPS/RAS or axis-order mistake cannot pass.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from CinePropLib.conversions import (
    CineArrays,
    ConversionError,
    cine_from_frames,
    cine_from_volume,
    frame_at_ras,
    frame_center_ras,
    frames_moved,
    grid_from_lps,
    grid_spacing,
    grid_to_lps,
    ijk_to_kji,
    kji_to_ijk,
    labels_from_frames,
    labels_from_volume,
    labels_to_frames,
    labels_to_volume,
)
from CinePropLib.volumefiles import read_volume, write_cine, write_labels


def test_axis_order_is_reversed_ijk():
    ijk = np.arange(2 * 3 * 4).reshape(2, 3, 4)       # I=2, J=3, K=4
    kji = ijk_to_kji(ijk)
    assert kji.shape == (4, 3, 2)
    assert kji[3, 2, 1] == ijk[1, 2, 3]                  # Slicer's [k, j, i] is cineprop's [i, j, k]
    np.testing.assert_array_equal(kji_to_ijk(kji), ijk)


def test_volume_cine_has_frames_on_last_axis(cine_and_labels, oblique_grid):
    frames, _ = cine_and_labels                          # I×J×T
    slicer_array = ijk_to_kji(frames)                    # what arrayFromVolume returns: T×J×I
    cine = cine_from_volume(slicer_array, oblique_grid, "c")
    np.testing.assert_array_equal(cine.frames, frames)
    np.testing.assert_allclose(cine.ijk_to_ras, oblique_grid)
    assert cine.num_frames == frames.shape[2] and cine.frame_grids is None


def test_colour_volume_becomes_grey(oblique_grid):
    rgb = np.zeros((3, 5, 6, 3), dtype=np.uint8)         # K×J×I×C
    rgb[..., 0] = 30
    rgb[..., 2] = 90
    cine = cine_from_volume(rgb, oblique_grid, components=True)
    assert cine.frames.shape == (6, 5, 3)
    np.testing.assert_allclose(cine.frames, 40.0)


def test_frames_round_trip_with_per_frame_geometry(cine_and_labels, oblique_grid):
    frames, labels = cine_and_labels
    t = frames.shape[2]
    frame_arrays = [frames[:, :, k].T[None] for k in range(t)]     # each 1×J×I, as Slicer gives a 2D frame
    moved = [oblique_grid.copy() for _ in range(t)]
    for k in range(t):
        moved[k][:3, 3] += [0.5 * k, 0.0, 0.0]                    # a probe sliding along R
    cine = cine_from_frames(frame_arrays, moved, "seq")
    np.testing.assert_array_equal(cine.frames, frames)
    np.testing.assert_allclose(cine.ijk_to_ras, moved[0])
    assert frames_moved(cine)
    assert all(np.allclose(a, b) for a, b in zip(cine.frame_grids, moved))
    back = labels_to_frames(labels)
    assert [f.shape for f in back] == [(1, labels.shape[1], labels.shape[0])] * t
    np.testing.assert_array_equal(labels_from_frames(back), labels)
    assert not frames_moved(cine_from_frames(frame_arrays, [oblique_grid] * t))


def test_label_volume_round_trip_keeps_values(cine_and_labels):
    _, labels = cine_and_labels
    labels = labels.copy()
    labels[0, 0, 0] = 255
    kji = labels_to_volume(labels)
    assert kji.dtype == np.uint8 and kji.shape == labels.shape[::-1]
    np.testing.assert_array_equal(labels_from_volume(kji), labels)
    assert set(np.unique(labels_from_volume(kji))) == set(np.unique(labels))


@pytest.mark.parametrize("bad, message", [
    ([np.zeros((1, 4, 5)), np.zeros((1, 4, 6))], "differ in size"),
    ([np.zeros((2, 4, 5)), np.zeros((2, 4, 5))], "2 slice positions.*Slice position"),
    ([], "no frames"),
])
def test_bad_frame_lists_are_refused(bad, message, oblique_grid):
    with pytest.raises(ConversionError, match=message):
        cine_from_frames(bad, [oblique_grid] * len(bad))


def test_bad_cines_and_labels_are_refused(oblique_grid):
    with pytest.raises(ConversionError, match="at least 2 frames"):
        CineArrays(np.zeros((4, 4, 1)), oblique_grid)
    with pytest.raises(ConversionError, match="NaN"):
        CineArrays(np.full((4, 4, 3), np.nan), oblique_grid)
    with pytest.raises(ConversionError, match="singular"):
        CineArrays(np.zeros((4, 4, 3)), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ConversionError, match="0..255"):
        labels_to_volume(np.full((2, 2, 2), 300))


def test_lps_ras_conversion_matches_nibabel(tmp_path, cine_and_labels, oblique_grid):
    frames, labels = cine_and_labels
    path = write_cine(tmp_path / "cine.nii.gz", frames, oblique_grid)
    # nibabel reports the voxel→RAS affine: exactly Slicer's IJKToRAS
    np.testing.assert_allclose(nib.load(str(path)).affine, oblique_grid, atol=1e-5)
    array, grid = read_volume(path)
    np.testing.assert_array_equal(array, frames)
    np.testing.assert_allclose(grid, oblique_grid, atol=1e-5)
    np.testing.assert_allclose(grid_spacing(grid), [0.7, 1.3, 2.5], atol=1e-6)
    np.testing.assert_allclose(grid_from_lps(*grid_to_lps(oblique_grid)), oblique_grid, atol=1e-12)
    label_path = write_labels(tmp_path / "labels.nrrd", labels, oblique_grid)
    back, back_grid = read_volume(label_path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(back_grid, oblique_grid, atol=1e-5)


def test_server_reader_sees_the_same_cine(tmp_path, cine_and_labels, oblique_grid):
    """What the cineprop server reads from our upload is our cine, frames on the last axis."""
    from cineprop.io import read_image, read_label

    frames, labels = cine_and_labels
    image = read_image(write_cine(tmp_path / "up.nii.gz", frames, oblique_grid))
    np.testing.assert_allclose(image.array, frames)
    spacing, origin, direction = grid_to_lps(oblique_grid)
    np.testing.assert_allclose(image.geometry.spacing, spacing, atol=1e-5)
    np.testing.assert_allclose(image.geometry.origin, origin, atol=1e-4)
    np.testing.assert_allclose(image.geometry.direction, direction, atol=1e-5)
    label = read_label(write_labels(tmp_path / "lab.nii.gz", labels, oblique_grid), like=image)
    np.testing.assert_array_equal(label.array, labels)


def test_sample_study_geometry(sample_file):
    array, grid = read_volume(sample_file)
    np.testing.assert_allclose(grid, nib.load(str(sample_file)).affine, atol=1e-5)
    assert array.shape == nib.load(str(sample_file)).shape


def test_frame_navigation_inverts(oblique_grid):
    shape = (24, 20, 7)
    for t in range(shape[2]):
        assert frame_at_ras(oblique_grid, frame_center_ras(oblique_grid, shape, t), shape[2]) == t
    far = frame_center_ras(oblique_grid, shape, 40)
    assert frame_at_ras(oblique_grid, far, shape[2]) == shape[2] - 1

