"""The one propagation path for an image file (``cineprop.volume_propagation``) and its empty-support rule.

The rule, tested once here for every front end: a slice position without paint on the chosen
frames stays 0; a file with no paint at all is a ``SupportError`` naming the label file (relearning
skips it instead). Batch and relearning are checked to follow it through their own entry points.
"""

from __future__ import annotations

import numpy as np
import pytest

from cineprop.baselines import CopyPropagator
from cineprop.batch.plan import CineJob
from cineprop.batch.work import propagate_job
from cineprop.errors import SupportError
from cineprop.io import Geometry, read_image, read_label, write_image, write_label
from cineprop.relearn.sources import CineSource, load_supports
from cineprop.synthetic import moving_shapes
from cineprop.volume_propagation import load_painted, painted_cines, propagate_volume

GEOMETRY_4D = Geometry((1.0, 1.0, 8.0, 0.04), (0.0, 0.0, 0.0, 0.0), tuple(np.eye(4).ravel()))


@pytest.fixture
def cine4d(tmp_path):
    """A 32×32×3×6 image (3 slice positions), its truth and a label file painting slice 1, frame 0."""
    frames, truth = np.zeros((32, 32, 3, 6), np.float32), np.zeros((32, 32, 3, 6), np.uint8)
    for z in range(3):
        frames[:, :, z], truth[:, :, z] = moving_shapes(32, 32, 6, labels=2, seed=z)
    image = write_image(tmp_path / "cine.nii.gz", frames, GEOMETRY_4D)
    painted = np.zeros_like(truth)
    painted[:, :, 1, 0] = truth[:, :, 1, 0]
    return image, truth, _label(tmp_path, "painted.nii.gz", painted, image)


def _label(tmp_path, name, array, image):
    return write_label(tmp_path / name, array, read_image(image))


def test_unpainted_slice_positions_stay_empty(cine4d):
    image, truth, painted = cine4d
    volume, cines, labels = load_painted(image, painted)
    result = propagate_volume(volume, cines, labels, CopyPropagator().propagate)
    assert [r.cine.slice_index for r in result.cines] == [1]
    assert result.labels.shape == volume.shape and result.labels[:, :, [0, 2]].sum() == 0
    np.testing.assert_array_equal(result.labels[:, :, 1, 3], truth[:, :, 1, 0])  # copy: frame 0's paint
    assert result.cines[0].query_frames() == [1, 2, 3, 4, 5] and len(result.query_confidence()) == 5
    np.testing.assert_array_equal(result.support_only()[:, :, 1, 0], truth[:, :, 1, 0])
    assert result.support_only()[:, :, :, 1:].sum() == 0


def test_nothing_painted_is_one_error_naming_the_label_file(cine4d, tmp_path):
    image, truth, _ = cine4d
    empty = _label(tmp_path, "empty.nii.gz", np.zeros_like(truth), image)
    _, cines, labels = load_painted(image, empty)
    with pytest.raises(SupportError, match=r"empty\.nii\.gz: no support: empty support, nothing is painted on any "
                                           r"slice position$"):
        painted_cines(cines, labels)
    assert painted_cines(cines, labels, required=False) == []      # relearning: nothing to learn from, no error
    _, one, labels = load_painted(image, empty, slice_index=1)     # one cine: the same rule, the same error
    with pytest.raises(SupportError, match="no support: empty support, nothing is painted on any frame"):
        painted_cines(one, labels)


def test_chosen_frames_and_ignored_labels_count_as_unpainted(cine4d, tmp_path):
    image, truth, painted = cine4d
    _, cines, labels = load_painted(image, painted)
    with pytest.raises(SupportError, match=r"nothing is painted on any slice position on frames \[2, 3\]"):
        painted_cines(cines, labels, frames=[3, 2])
    with pytest.raises(SupportError, match=r"support frames \[6\] are outside 0..5"):
        painted_cines(cines, labels, frames=[0, 6])
    (cine, kept), = painted_cines(cines, labels, frames=[0])
    assert cine.slice_index == 1 and set(np.unique(kept)) == {0, 1, 2}
    (_, without), = painted_cines(cines, labels, ignored_labels=[2])
    assert set(np.unique(without)) == {0, 1}                       # label 2 is no support
    with pytest.raises(SupportError, match="no support"):
        painted_cines(cines, labels, ignored_labels=[1, 2])        # only ignored values painted: nothing painted


def test_a_frame_painted_everywhere_names_the_label_file(cine4d, tmp_path):
    image, truth, _ = cine4d
    full = np.zeros_like(truth)
    full[:, :, 0, 2] = 1
    path = _label(tmp_path, "full.nii.gz", full, image)
    volume, cines, labels = load_painted(image, path)
    with pytest.raises(SupportError, match=r"full\.nii\.gz: support frame 2 is painted everywhere"):
        propagate_volume(volume, cines, labels, CopyPropagator().propagate)


def test_batch_and_relearning_follow_the_rule(cine4d, tmp_path):
    image, truth, painted = cine4d
    empty = _label(tmp_path, "empty.nii.gz", np.zeros_like(truth), image)
    row = propagate_job(CineJob("cine", str(image), str(painted), str(tmp_path / "out.nii.gz")), CopyPropagator())
    assert row["frames"] == 6 and row["support_frames"] == 1
    assert row["flagged_frames"] == ["z1:2", "z1:3", "z1:4", "z1:5"]     # copy: confidence 1 / (1 + distance)
    assert read_label(tmp_path / "out.nii.gz").array[:, :, [0, 2]].sum() == 0
    with pytest.raises(SupportError, match="empty support"):
        propagate_job(CineJob("cine", str(image), str(empty), str(tmp_path / "o.nii.gz")), CopyPropagator())
    assert not (tmp_path / "o.nii.gz").exists()
    assert [c.slice_index for c, _ in load_supports(CineSource("cine", image, painted))] == [1]
    assert list(load_supports(CineSource("cine", image, empty))) == []
