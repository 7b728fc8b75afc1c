"""The cines Slicer users have (issue 14, item 2) and per-frame painting (item 3), on real files and arrays.

* a 4D NIfTI cine ``H×W×1×T`` as dcm2niix writes it, written by nibabel, read to a frames volume;
* a DICOM cine series with several slice positions: one position picked, with its own geometry;
* a segmentation sequence's per-frame segment lists composed into one label array.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from CinePropLib.conversions import ConversionError, cine_from_frames, frame_center_ras, pick_slice
from CinePropLib.segments import compose_frame_labels, missing_segments
from CinePropLib.volumefiles import file_positions, read_cine_file, read_volume, write_cine, write_slice_labels


def _ras_affine(grid: np.ndarray) -> np.ndarray:
    """nibabel's affine is IJK → RAS, the same as Slicer's IJKToRAS."""
    return np.asarray(grid, dtype=np.float64)


def test_4d_nifti_cine_loads_as_a_frames_volume(tmp_path, cine_and_labels, oblique_grid):
    frames, _ = cine_and_labels                                   # I×J×T
    path = tmp_path / "dcm2niix_cine.nii.gz"
    nib.save(nib.Nifti1Image(frames[:, :, None, :], _ras_affine(oblique_grid)), path)   # H×W×1×T
    assert nib.load(path).shape == (*frames.shape[:2], 1, frames.shape[2])

    array, grid = read_cine_file(path)
    np.testing.assert_allclose(array, frames, rtol=1e-6)
    np.testing.assert_allclose(grid, oblique_grid, atol=1e-4)     # the slice's own spacing, direction, origin
    # and it is the same cine as the 3D file the server writes (frames on K)
    three_d = write_cine(tmp_path / "same.nii.gz", frames, oblique_grid)
    np.testing.assert_allclose(read_cine_file(three_d)[0], read_volume(three_d)[0])


def test_4d_stack_over_time_one_position_read_and_its_labels_written_back(tmp_path, oblique_grid):
    """``H×W×Z×T`` (a server study with several slice positions): position 1 with its own geometry; its
    labels written in the file's 4D shape, the other positions kept from a base label file."""
    rng = np.random.default_rng(1)
    stack = rng.random((8, 6, 3, 4)).astype(np.float32)                        # H×W×Z×T
    path = tmp_path / "stack.nii.gz"
    nib.save(nib.Nifti1Image(stack, _ras_affine(oblique_grid)), path)
    assert file_positions(path) == 3
    with pytest.raises(ConversionError, match="3 slice positions per time point; choose one of 0..2"):
        read_cine_file(path)
    frames, grid = read_cine_file(path, 1)
    np.testing.assert_allclose(frames, stack[:, :, 1, :], rtol=1e-6)
    np.testing.assert_allclose(grid[:3, 3], (oblique_grid @ [0, 0, 1, 1])[:3], atol=1e-4)

    base = np.zeros(stack.shape, np.uint8)
    base[..., 0, :] = 7                                                          # another position's final label
    base_path = tmp_path / "final.nii.gz"
    nib.save(nib.Nifti1Image(base, _ras_affine(oblique_grid)), base_path)
    labels = (frames > 0.5).astype(np.uint8) * 2
    written = write_slice_labels(tmp_path / "out.nii.gz", labels, 1, path, base_path)
    back = nib.load(written)
    np.testing.assert_allclose(back.affine, nib.load(path).affine, atol=1e-4)   # placed like the study
    data = np.asarray(back.dataobj)
    np.testing.assert_array_equal(data[..., 1, :], labels)
    assert (data[..., 0, :] == 7).all() and not data[..., 2, :].any()
    np.testing.assert_array_equal(read_cine_file(written, 1)[0], labels)
    with pytest.raises(ConversionError, match="slice position 3"):
        write_slice_labels(tmp_path / "bad.nii.gz", labels, 3, path)


def test_slice_position_of_a_stack_over_time(oblique_grid):
    """Frames ``K×J×I`` (3 positions): position 2's cine and geometry; a 2D frame passes through."""
    rng = np.random.default_rng(3)
    stacks = [rng.random((3, 5, 7)).astype(np.float32) for _ in range(4)]      # T frames of K×J×I
    cine = cine_from_frames(stacks, [oblique_grid] * 4, "stack", slice_index=2)
    assert cine.frames.shape == (7, 5, 4)
    np.testing.assert_array_equal(cine.frames[..., 1], stacks[1][2].T)
    # position 2 lies two slice steps along K from position 0
    expected = oblique_grid @ np.array([0.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(cine.ijk_to_ras[:3, 3], expected[:3])
    np.testing.assert_allclose(frame_center_ras(cine.ijk_to_ras, (7, 5, 1), 0),
                               frame_center_ras(oblique_grid, (7, 5, 3), 2))
    with pytest.raises(ConversionError, match="3 slice positions.*0..2"):
        cine_from_frames(stacks, [oblique_grid] * 4)
    with pytest.raises(ConversionError, match="3 slice positions"):
        cine_from_frames(stacks, [oblique_grid] * 4, slice_index=3)
    flat, grid = pick_slice(stacks[0][:1], oblique_grid, None)
    assert flat.shape == (1, 5, 7) and np.array_equal(grid, oblique_grid)


def test_segmentation_sequence_frames_compose_into_one_label_array():
    """Each frame has its own segment list (a segmentation sequence); one name keeps one value."""
    shape = (1, 4, 6)                                              # 1×J×I
    lv = np.zeros(shape, np.uint8)
    lv[0, 1:3, 2:4] = 1
    rv = np.zeros(shape, np.uint8)
    rv[0, 0, 0] = 1
    frames = [[("LV", lv)], [], [("RV", rv), ("LV", lv)]]          # frame 1 unpainted, frame 2 adds RV
    labels, values = compose_frame_labels(frames, shape, known={"RV": 1, "LV": 3})
    assert values == {"LV": 3, "RV": 1}
    assert labels.shape == (6, 4, 3) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels[..., 0], lv[0].T * 3)
    assert not labels[..., 1].any()
    assert labels[0, 0, 2] == 1 and labels[2, 1, 2] == 3
    with pytest.raises(ConversionError, match="no frames"):
        compose_frame_labels([], shape)


def test_a_frame_shown_gets_the_segments_made_on_other_frames():
    template = {"LV": (1.0, 0.0, 0.0), "RV": (0.0, 0.0, 1.0)}
    assert missing_segments(template, {"LV": (0.5, 0.5, 0.5)}) == {"RV": (0.0, 0.0, 1.0)}   # kept: its own colour
    assert missing_segments(template, template) == {}
    assert missing_segments({}, {"LV": (1.0, 0.0, 0.0)}) == {}
