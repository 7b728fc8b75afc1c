"""Slicer's Propagate → correct → Propagate reaches the app's session cache (issue 13).

A module of its own: it needs a server whose model is an *image* checkpoint (method ``model``, the
tiny checkpoint of ``cineprop_train_server``, fresh per module), and the Slicer client's other module
trains on its server, after which a relearned checkpoint (no live session: its stage 2 runs over the
whole clip) is served.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "CineProp"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from CinePropLib.conversions import CineArrays  # noqa: E402
from CinePropLib.workflow import CineWorkflow  # noqa: E402
from CinePropLib.segments import SegmentSpec  # noqa: E402

pytestmark = pytest.mark.slow

SEGMENT = [SegmentSpec("structure", (0.9, 0.3, 0.2), 1)]


def test_repeated_propagate_reuses_the_servers_session(cineprop_train_server, tmp_path):
    """The second call says it reused the live session; the frame the user painted comes back as painted."""
    from cineprop.synthetic import moving_shapes

    server, _, _ = cineprop_train_server
    workflow = CineWorkflow(workdir=tmp_path / "client")
    assert workflow.connect(server.url).startswith("Connected to")
    frames, truth = moving_shapes(48, 48, 10, labels=1, seed=11)
    cine = CineArrays(frames, np.diag([1.0, 1.0, 1.0, 1.0]), "slicer reuse")
    painted = np.zeros_like(truth)
    painted[..., 0] = truth[..., 0]
    first = workflow.propagate(cine, painted, SEGMENT)
    corrected = first.labels.copy()
    corrected[..., 9] = truth[..., 9]
    if np.array_equal(corrected, first.labels):
        corrected[0, 0, 9] = 1
    second = workflow.propagate(cine, corrected, SEGMENT)
    assert second.support_frames == [0, 9]
    np.testing.assert_array_equal(second.labels[..., 9], corrected[..., 9])
    assert [c["reused_session"] for c in first.details["cines"]] == [False]
    assert [c["reused_session"] for c in second.details["cines"]] == [True], second.details.get("session_cache")
