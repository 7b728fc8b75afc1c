"""Fixtures for the CineProp tests that run without 3D Slicer (pytest, part of ``make test``).

``CinePropLib`` is imported the way Slicer imports it: the module folder is on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]          # slicer_extension/CineProp
REPO = MODULE_DIR.parents[1]
UI_FILE = MODULE_DIR / "Resources" / "UI" / "CineProp.ui"
MODULE_FILE = MODULE_DIR / "CineProp.py"

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


@pytest.fixture(scope="session")
def qapp():
    """A QApplication on the offscreen platform (no display needed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["cineprop-tests"])


@pytest.fixture
def oblique_grid() -> np.ndarray:
    """An IJKToRAS with anisotropic spacing, a rotation about S, a flipped axis and an offset origin."""
    c, s = np.cos(0.4), np.sin(0.4)
    directions = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    grid = np.eye(4)
    grid[:3, :3] = directions * np.array([0.7, 1.3, 2.5])[None, :]
    grid[:3, 3] = [-12.5, 30.25, 7.0]
    return grid


@pytest.fixture
def cine_and_labels():
    """A small synthetic cine (``I×J×T`` = 24×20×7) with two labels; frames all differ."""
    from cineprop.synthetic import moving_shapes

    frames, labels = moving_shapes(24, 20, 7, labels=2, seed=5)
    return frames, labels


@pytest.fixture
def sample_file() -> Path:
    """A bundled ACDC cine (``data/sample``), as the server's datastore would hold it."""
    path = REPO / "data" / "sample" / "patient001_frame01.nii.gz"
    assert path.exists(), "bundled sample study missing"
    return path
