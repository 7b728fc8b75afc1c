"""Shared fixtures: synthetic cines written as real NIfTI files, the bundled sample study, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cineprop.io import Geometry, Volume, write_image, write_label
from cineprop.synthetic import moving_shapes

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def shared_data() -> Path | None:
    """The shared data folder (``$CINEPROP_SHARED_DATA`` or ``../shared/data`` beside the repo)."""
    candidates = [os.environ.get("CINEPROP_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "acdc" / "splits.csv").exists():
            return Path(c)
    return None


@pytest.fixture
def synthetic():
    """(frames H×W×T float32, labels H×W×T uint8) with 2 labels, 48×56×10."""
    return moving_shapes(48, 56, 10, labels=2, seed=3)


@pytest.fixture
def geometry3d():
    """A non-trivial 3D geometry (anisotropic spacing, offset origin, rotated direction)."""
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    return Geometry((0.7, 0.9, 2.5), (-12.5, 30.25, 7.0), direction)


@pytest.fixture
def synthetic_files(tmp_path, synthetic, geometry3d):
    """The synthetic cine written as ``cine.nii.gz`` + ``cine_label.nii.gz``; returns (image, label) paths."""
    frames, labels = synthetic
    image = write_image(tmp_path / "cine.nii.gz", frames, geometry3d)
    label = write_label(tmp_path / "cine_label.nii.gz", labels, Volume(frames, geometry3d))
    return image, label


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assert (SAMPLE / "patient001_frame01.nii.gz").exists(), "bundled sample study missing"
    return SAMPLE


@pytest.fixture(scope="session")
def cineprop_server(tmp_path_factory):
    """One real MONAI Label server (cineprop app, ``servers.TEST_CONF``) for the whole test session.

    It serves a temporary copy of the sample study: ``patient001_frame01`` and ``patient080_frame01``
    with a saved support (tag ``support``), ``patient022_frame01`` without one. Yields a
    :class:`servers.CinepropServer` (``url``, ``studies``, ``log_tail()``); stopped at the end of the
    session, also after failures. Tests may add studies and labels but must not delete the sample ones.
    Its temporary folder (``TMPDIR``) is ``server.studies.parent / "tmp"``.
    """
    from servers import prepare_sample_studies, start_server

    studies = tmp_path_factory.mktemp("monailabel") / "studies"
    prepare_sample_studies(studies, with_support=["patient001_frame01", "patient080_frame01"])
    (studies.parent / "tmp").mkdir()  # the server's temporary folder, so tests can see what it leaves there
    server = start_server(studies, log_path=studies.parent / "server.log", env={"TMPDIR": str(studies.parent / "tmp")})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cineprop_train_server(tmp_path_factory):
    """A real server with the train tasks: method ``model`` on a tiny checkpoint, a copy of the app.

    Data: ``servers.train_studies`` (``study0..3``, supports for ``study0``/``study1``, no final
    label at start). Yields ``(server, truth folder, checkpoint)``. One fresh server per module: the
    modules that train on it change its datastore and model, and ``tests/test_app_train.py``
    expects no final label until it submits them, whichever module ran before it.
    """
    from servers import copy_app, start_server, train_studies

    root = tmp_path_factory.mktemp("train")
    studies, truth, checkpoint = train_studies(root)
    app_dir = copy_app(root / "app")
    server = start_server(studies, conf={"method": "model", "checkpoint": str(checkpoint), "preload": "false"},
                          log_path=root / "server.log", app_dir=app_dir)
    try:
        yield server, truth, checkpoint
    finally:
        server.stop()
