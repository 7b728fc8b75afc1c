"""NIfTI headers SimpleITK would silently reinterpret are refused with a message (issue 16, item 12)."""

from __future__ import annotations

import numpy as np
import pytest
from inputs_factory import write_raw_nifti

from cineprop.errors import InputError
from cineprop.io import read_image

BROKEN = {
    "NaN spacing, no qform/sform": ({"pixdim": np.nan, "qform_code": 0, "sform_code": 0}, "voxel spacing"),
    "zero spacing, no qform/sform": ({"pixdim": 0.0, "qform_code": 0, "sform_code": 0}, "voxel spacing"),
    "all-NaN sform": ({"srow": np.nan, "qform_code": 0}, "non-finite"),
    "scl_slope inf": ({"scl_slope": np.inf}, "infinite"),
    "4D of one frame": ({"shape": (32, 32, 5, 1)}, "single frame"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_headers_are_refused(tmp_path, case):
    fields, words = BROKEN[case]
    path = write_raw_nifti(tmp_path / "x.nii.gz", **fields)
    with pytest.raises(InputError, match=words):
        read_image(path)


def test_the_same_file_with_a_sound_header_reads(tmp_path):
    volume = read_image(write_raw_nifti(tmp_path / "x.nii.gz", pixdim=1.5, qform_code=0, sform_code=0))
    assert volume.shape == (32, 32, 6) and volume.geometry.spacing == pytest.approx((1.5, 1.5, 1.5))
