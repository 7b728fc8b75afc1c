"""The app keeps live sessions: a correction re-propagates through HTTP with a fresh session's result; bounded."""

from __future__ import annotations

import os

import numpy as np
import pytest
from servers import start_server, synthetic_study, tiny_checkpoint
from test_app_server import infer

from cineprop.io import load_cines, read_label
from cineprop.methods import build_propagator
from cineprop.support import SupportSet

pytestmark = pytest.mark.slow

STUDIES = ["s0", "s1", "s2", "s3"]  # s3: only the equality test, so the tests run in any order


@pytest.fixture(scope="module")
def session_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    studies = root / "studies"
    studies.mkdir()
    for seed, image_id in enumerate(STUDIES):   # still shapes: every support below keeps one region of interest
        synthetic_study(studies, image_id, 64, 72, 12, support_frames=(0,), seed=seed)
    checkpoint = tiny_checkpoint(root / "tiny.pt")
    server = start_server(studies, conf={"method": "model", "checkpoint": str(checkpoint), "session_cache": "2"},
                          log_path=root / "server.log", env={"OMP_NUM_THREADS": "1"})
    try:
        yield server, checkpoint
    finally:
        server.stop()


def painted(server, image_id: str, frames: list[int], tmp_path):
    """An uploaded support with the true labels of ``frames`` (the study's ``_support`` file holds frame 0 only)."""
    from cineprop.io import write_label

    from cineprop.synthetic import moving_shapes

    volume, _ = load_cines(server.studies / f"{image_id}.nii.gz")
    _, truth = moving_shapes(64, 72, 12, labels=2, seed=STUDIES.index(image_id))
    labels = np.zeros_like(truth)
    labels[:, :, frames] = truth[:, :, frames]
    return write_label(tmp_path / f"{image_id}_{'_'.join(map(str, frames))}.nii.gz", labels, volume), labels


def run(server, image_id, frames, tmp_path):
    path, labels = painted(server, image_id, frames, tmp_path)
    status, info, body = infer(server, image_id, path)
    assert status == 200, f"{info}\n{server.log_tail()}"
    result = tmp_path / f"result_{image_id}_{len(frames)}.nii.gz"
    result.write_bytes(body)
    return info, labels, result


def test_correction_reuses_the_session_with_a_fresh_sessions_result(session_server, tmp_path):
    server, checkpoint = session_server
    first, _, _ = run(server, "s3", [0], tmp_path)
    assert first["cines"][0]["reused_session"] is False
    second, labels, result = run(server, "s3", [0, 6], tmp_path)
    assert second["cines"][0]["reused_session"] is True
    assert second["session_cache"]["hits"] >= 1
    volume, (cine,) = load_cines(server.studies / "s3.nii.gz")
    fresh = build_propagator("model", checkpoint=str(checkpoint)).propagate(cine, SupportSet.from_labels(labels))
    served = read_label(result, like=volume).array
    assert np.mean(served != fresh.labels) <= 1e-4
    np.testing.assert_allclose(second["confidence"], np.round(fresh.confidence, 4), atol=2e-4)


def test_sessions_beyond_the_cap_are_evicted_and_a_changed_image_is_not_reused(session_server, tmp_path):
    server, _ = session_server
    for image_id in STUDIES[:3]:
        info, _, _ = run(server, image_id, [0], tmp_path)
    cache = info["session_cache"]
    assert cache["sessions"] == 2 and cache["evicted"] >= 1 and cache["max_sessions"] == 2
    info, _, _ = run(server, "s2", [0, 5], tmp_path)            # most recent: still live
    assert info["cines"][0]["reused_session"] is True
    info, _, _ = run(server, "s0", [0, 5], tmp_path)            # least recent: evicted, rebuilt
    assert info["cines"][0]["reused_session"] is False
    image = server.studies / "s0.nii.gz"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # the study's file was replaced
    info, _, _ = run(server, "s0", [0, 5, 9], tmp_path)
    assert info["cines"][0]["reused_session"] is False and info["session_cache"]["invalidated"] >= 1
