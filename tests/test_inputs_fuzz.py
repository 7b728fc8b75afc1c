"""Property-based fuzzing: loaders and label/support parsing raise only documented errors (CinepropError).

Each property starts from a small valid file (NIfTI, NIfTI gz, NRRD, DICOM) and mutates it: cut it,
overwrite bytes (mostly in the header, where parsers decide what to allocate), or, for gzip, mutate
the payload and recompress so the mutation reaches the image parser rather than gzip's CRC check.
Whatever the bytes, a reader either returns a valid volume or raises a :class:`CinepropError`;
any other exception, a hang or a huge allocation is a bug. Budgets are bounded (``max_examples``)
so the whole module runs in well under a minute on two cores.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from inputs_factory import mr_series_frames, multiframe_frames, write_mr_series, write_multiframe

from cineprop.errors import CinepropError
from cineprop.io import Geometry, as_label_array, read_any, read_image, read_label, write_image, write_label
from cineprop.io.volume import MAX_LABEL, MAX_VOXELS
from cineprop.support import SupportSet

FUZZ = settings(max_examples=120, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Seeds(dict):
    """``{file name: valid file bytes}`` (the suffix picks the reader) and the folder to write cases to."""

    def __init__(self, work, files):
        super().__init__(files)
        self.work = work

    def __repr__(self) -> str:  # keeps hypothesis's failure reports short
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Seeds:
    """The valid files the properties mutate."""
    work = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    image = (rng.random((6, 5, 3)) * 100).astype(np.float32)
    geometry = Geometry((0.7, 0.9, 2.0), (1.0, -2.0, 3.0), tuple(np.eye(3).ravel()))
    files = {}
    for name in ("seed.nii", "seed.nii.gz", "seed.nrrd"):
        files[name] = write_image(work / name, image, geometry).read_bytes()
    files["us.dcm"] = write_multiframe(work / "us.dcm", multiframe_frames(t=3, rows=6, cols=5),
                                       colour="RGB").read_bytes()
    paths, _ = write_mr_series(work / "mr", mr_series_frames(z=1, t=2, rows=5, cols=4), shuffle_seed=None)
    files["mr.dcm"] = paths[0].read_bytes()
    return Seeds(work, files)


@st.composite
def mutated(draw, data: bytes, gz: bool) -> bytes:
    """``data`` cut short or with a few bytes overwritten (gzip: in the decompressed payload)."""
    payload = gzip.decompress(data) if gz else data
    if draw(st.booleans()):
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    else:
        payload = bytearray(payload)
        header = min(len(payload), 400)  # most decisions (sizes, types, offsets) are made in the header
        for _ in range(draw(st.integers(1, 8))):
            where = draw(st.one_of(st.integers(0, header - 1), st.integers(0, len(payload) - 1)))
            payload[where] = draw(st.integers(0, 255))
        payload = bytes(payload)
    return gzip.compress(payload) if gz else payload


def _case(seeds, name: str, data) -> Path:
    """Write one mutated version of seed ``name`` and return its path."""
    path = seeds.work / f"case-{name}"
    path.write_bytes(data.draw(mutated(seeds[name], name.endswith(".gz"))))
    return path


def _check_volume(volume) -> None:
    assert volume.array.ndim in (3, 4) and volume.array.size <= MAX_VOXELS
    assert volume.array.dtype in (np.float32, np.uint8)
    assert np.isfinite(volume.array).all()


@pytest.mark.parametrize("name", ["seed.nii", "seed.nii.gz", "seed.nrrd"])
@FUZZ
@given(data=st.data())
def test_volume_readers_on_mutated_files(seeds, name, data):
    path = _case(seeds, name, data)
    for read in (read_image, read_label):
        try:
            volume = read(path)
        except CinepropError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            continue
        _check_volume(volume)
        try:  # what was accepted can be written back with its geometry (the server writes labels so)
            write_label(seeds.work / "back.nii.gz", np.zeros(volume.shape, np.uint8), volume)
        except CinepropError:
            pass


@pytest.mark.parametrize("name", ["us.dcm", "mr.dcm"])
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_dicom_reader_on_mutated_files(seeds, name, data):
    path = _case(seeds, name, data)
    try:
        _check_volume(read_any(path))
    except CinepropError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


_DTYPES = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                    hnp.floating_dtypes(), hnp.complex_number_dtypes())


@st.composite
def label_arrays(draw, min_dims=0, max_dims=4):
    dtype = draw(_DTYPES)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5))
    # mostly small non-negative integers (valid labels), sometimes any value of the type (NaN, inf, -5, 1e30)
    elements = st.one_of(st.integers(0, 4).map(dtype.type), hnp.from_dtype(dtype))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FUZZ
@given(array=label_arrays(), shape=st.none() | hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
def test_as_label_array(array, shape):
    try:
        labels = as_label_array(array, "labels.nii.gz", shape)
    except CinepropError as exc:
        assert str(exc).startswith("labels.nii.gz: ")
        return
    assert labels.dtype == np.uint8 and labels.shape == array.shape
    assert shape is None or labels.shape == tuple(shape)
    np.testing.assert_array_equal(labels, array.astype(np.float64))  # values kept exactly
    assert array.size == 0 or 0 <= array.min() and array.max() <= MAX_LABEL


@FUZZ
@given(labels=label_arrays(min_dims=1, max_dims=4),
       frames=st.none() | st.lists(st.integers(-3, 8) | st.integers(-2**70, 2**70), max_size=6))
def test_support_from_labels(labels, frames):
    try:
        support = SupportSet.from_labels(labels, frames)
    except CinepropError:
        return
    h, w, t = support.shape
    assert labels.shape == (h, w, t)
    assert support.frames and all(0 <= f < t for f in support.frames)
    if frames is not None:  # named frames are used, never silently dropped when out of range
        assert set(support.frames) <= set(frames) and all(0 <= f < t for f in frames)
    for label in support.labels:
        assert 1 <= label <= MAX_LABEL
        for f in support.frames_of(label):
            mask = support.masks[label][f]
            assert mask.any() and np.array_equal(mask, labels[:, :, f] == label)
    for f in support.frames:
        painted = support.label_array(f)
        assert np.array_equal(painted > 0, np.isin(labels[:, :, f], support.labels))
