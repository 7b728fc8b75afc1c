"""The Slicer extension's REST client and workflow against a REAL cineprop MONAI Label server.

Uses the session's ``cineprop_server`` (``tests/conftest.py``: the sample study, patient001 and
patient080 with a saved support, patient022 without). Everything runs as the Slicer module runs
it, minus the MRML nodes: ``CineWorkflow`` with arrays in Slicer's geometry convention.
These tests add studies and labels of their own and never give a sample study a final label.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "CineProp"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from CinePropLib.client import CinePropClient, ServerError  # noqa: E402
from CinePropLib.conversions import CineArrays, same_grid  # noqa: E402
from CinePropLib.workflow import IMAGE_TRAIN_TASK, RELEARN_TASK, CineWorkflow, WorkflowError  # noqa: E402
from CinePropLib.segments import SegmentSpec  # noqa: E402
from CinePropLib.volumefiles import read_volume, write_labels  # noqa: E402

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
UNSUPPORTED = "patient022_frame01"
SEGMENTS = [SegmentSpec("right ventricle", (0.3, 0.5, 0.9), 1), SegmentSpec("myocardium", (0.3, 0.7, 0.4), 2),
            SegmentSpec("left ventricle", (0.9, 0.3, 0.2), 3)]


def _sample(image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames ``I×J×T``, ground truth ``I×J×T``, IJKToRAS) of a bundled sample cine."""
    frames, grid = read_volume(SAMPLE / f"{image_id}.nii.gz")
    truth, _ = read_volume(SAMPLE / f"{image_id}_label.nii.gz")
    return frames, truth, grid


def _paint(truth: np.ndarray, frames: list[int]) -> np.ndarray:
    painted = np.zeros_like(truth)
    for t in frames:
        painted[..., t] = truth[..., t]
    return painted


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture
def cineprop_server(request):
    """The app's session server (``tests/conftest.py``); skipped, saying why, where the app is absent."""
    try:
        return request.getfixturevalue("cineprop_server")
    except pytest.FixtureLookupError:
        pytest.skip("needs the MONAI Label app's cineprop_server fixture (tests/conftest.py)")


@pytest.fixture
def workflow(cineprop_server, tmp_path):
    wf = CineWorkflow(workdir=tmp_path / "client")
    status = wf.connect(cineprop_server.url)
    assert status.startswith("Connected to"), status
    return wf


def test_connect_and_list_studies(workflow, cineprop_server):
    assert "cineprop" in workflow.info["models"]
    assert "cineprop_uncertain" in workflow.info["strategies"]
    ids = {s.id for s in workflow.studies()}
    assert {"patient001_frame01", "patient022_frame01", "patient080_frame01"} <= ids
    supported = {s.id: s for s in workflow.studies()}["patient001_frame01"]
    assert "support" in supported.label_tags and not supported.labelled


def test_propagate_a_datastore_study_with_an_uploaded_support(workflow, tmp_path):
    """Download the study as Slicer does, paint one frame, propagate: shape, geometry, values, support kept."""
    study = workflow.client.upload_image(SAMPLE / f"{UNSUPPORTED}.nii.gz", "slicer_study_022")  # ours to change
    assert study == "slicer_study_022"
    path = workflow.download_study(study)
    frames, grid = read_volume(path)
    _, truth, sample_grid = _sample(UNSUPPORTED)
    np.testing.assert_array_equal(frames, _sample(UNSUPPORTED)[0])
    assert same_grid(grid, sample_grid)
    cine = CineArrays(frames, grid, study)
    middle = cine.num_frames // 2
    result = workflow.propagate(cine, _paint(truth, [middle]), SEGMENTS, image_id=study)

    assert result.labels.shape == truth.shape and result.labels.dtype == np.uint8
    assert result.support_frames == [middle]
    np.testing.assert_array_equal(result.labels[..., middle], truth[..., middle])
    assert set(np.unique(result.labels)) <= {0, 1, 2, 3}
    assert result.confidence is not None and result.confidence.shape == (cine.num_frames,)
    assert result.confidence[middle] == pytest.approx(1.0)
    assert set(result.flagged) <= set(range(cine.num_frames)) - {middle}
    assert result.label_names == {"right ventricle": 1, "myocardium": 2, "left ventricle": 3}
    assert result.seconds is not None and result.seconds > 0
    neighbour = middle + 1                              # propagation is a segmentation, not noise
    assert _dice(result.labels[..., neighbour] == 3, truth[..., neighbour] == 3) > 0.5
    # save_support: the painted frame is now this study's saved support on the server
    assert "support" in {s.id: s for s in workflow.studies()}[study].label_tags
    assert "support" not in {s.id: s for s in workflow.studies()}[UNSUPPORTED].label_tags


def test_local_cine_uses_one_session_and_corrections_become_support(workflow, tmp_path):
    """A cine not on the server (oblique geometry) is uploaded once; re-propagation adds corrected frames."""
    frames, truth, _ = _sample("patient080_frame01")
    c, s = np.cos(0.3), np.sin(0.3)
    grid = np.eye(4)
    grid[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) * [1.2, 1.4, 8.0]  # rotated, anisotropic
    grid[:3, 3] = [12.0, -40.0, 3.5]
    cine = CineArrays(frames, grid, "local cine 080")
    first = workflow.propagate(cine, _paint(truth, [0]), SEGMENTS)
    assert first.support_frames == [0] and first.labels.shape == truth.shape
    sessions = dict(workflow._sessions)
    assert len(sessions) == 1

    corrected = first.labels.copy()
    last = cine.num_frames - 1
    corrected[..., last] = truth[..., last]             # the user fixes the last frame
    if np.array_equal(corrected, first.labels):
        corrected[0, 0, last] = 2                       # (the propagation was already exact there)
    assert workflow.support_frames(cine, corrected) == [0, last]
    second = workflow.propagate(cine, corrected, SEGMENTS)
    assert second.support_frames == [0, last]
    np.testing.assert_array_equal(second.labels[..., last], corrected[..., last])
    assert workflow._sessions == sessions                # same upload reused
    assert workflow.client.session_exists(next(iter(sessions.values())))


def test_a_background_result_counts_only_once_shown(workflow):
    """The panel propagates with ``record=False`` and records a result when it shows it, so a cancelled
    one never turns the frames the user did not touch into "corrections" (support) at the next Propagate."""
    frames, truth, grid = _sample("patient080_frame01")
    cine = CineArrays(frames[..., :6], grid, "shown later")
    last = cine.num_frames - 1
    first = workflow.propagate(cine, _paint(truth[..., :6], [0]), SEGMENTS)       # shown to the user
    corrected = first.labels.copy()
    corrected[..., last] = truth[..., last]
    corrected[0, 0, last] = 2                                                      # surely a change
    cancelled = workflow.propagate(cine, corrected, SEGMENTS, record=False)        # e.g. the user pressed Cancel
    assert cancelled.support_frames == [0, last]
    assert workflow.support_frames(cine, corrected) == [0, last]                  # unaffected by it
    differs = {t for t in range(last) if not np.array_equal(corrected[..., t], cancelled.labels[..., t])}
    assert differs, "the second propagation changed no frame; the check below would be empty"
    workflow.record(cine, cancelled)                                               # had it been shown …
    assert set(workflow.support_frames(cine, corrected)) > {0, last}              # … untouched frames would count


def test_a_4d_study_one_slice_position_at_a_time(workflow, tmp_path):
    """A study stored ``H×W×Z×T``: Load study shows one position; Propagate sends ``slice_index`` and the
    support in the file's 4D shape; Submit writes that position and keeps the other one's final label."""
    import nibabel as nib

    frames, truth, grid = _sample("patient080_frame01")
    frames, truth = frames[..., :5], truth[..., :5]
    stack = np.stack([frames, frames[::-1]], axis=2)                      # H×W×2×T: position 1 is flipped
    truths = np.stack([truth, truth[::-1]], axis=2)
    path = tmp_path / "stack_study.nii.gz"
    nib.save(nib.Nifti1Image(stack, grid), path)
    study = workflow.client.upload_image(path, "slicer_stack_study")

    for z in (1, 0):                                                        # one position, then the other
        shown, shown_grid = workflow.open_study_file(study, workflow.download_study(study), z)
        np.testing.assert_allclose(shown, stack[:, :, z], rtol=1e-5)
        cine = CineArrays(shown, shown_grid, study)
        result = workflow.propagate(cine, _paint(truths[:, :, z], [2]), SEGMENTS, image_id=study)
        assert result.labels.shape == truth.shape and result.support_frames == [2]
        np.testing.assert_array_equal(result.labels[..., 2], truths[:, :, z, 2])
        assert _dice(result.labels[..., 3] == 3, truths[:, :, z, 3] == 3) > 0.5
        assert workflow.submit(cine, truths[:, :, z], SEGMENTS, image_id=study) == study

    stored = nib.load(workflow.client.download_label(study, "final", tmp_path / "final"))
    np.testing.assert_array_equal(np.asarray(stored.dataobj), truths)      # both positions, each in place


def test_errors_reach_the_user_as_one_line(workflow, tmp_path):
    frames, truth, grid = _sample(UNSUPPORTED)
    cine = CineArrays(frames, grid, UNSUPPORTED)
    with pytest.raises(WorkflowError, match="Paint the structure"):
        workflow.propagate(cine, np.zeros_like(truth), SEGMENTS, image_id=UNSUPPORTED)

    client = workflow.client
    wrong = write_labels(tmp_path / "wrong.nii.gz", np.ones((8, 8, 3), np.uint8), grid)
    with pytest.raises(ServerError) as caught:
        client.infer("cineprop", tmp_path, image_id=UNSUPPORTED, label=wrong)
    assert 400 <= caught.value.status < 500
    assert "shape" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ServerError) as caught:
        client.infer("cineprop", tmp_path, image_id="no_such_study", label=wrong)
    assert 400 <= caught.value.status < 500 and "no_such_study" in str(caught.value)


def test_submit_then_next_study(workflow, cineprop_server):
    frames, truth, grid = _sample("patient001_frame01")
    cine = CineArrays(frames[..., :5], grid, "slicer submitted cine")
    image_id = workflow.submit(cine, truth[..., :5], SEGMENTS)
    assert image_id == "slicer_submitted_cine"
    studies = {s.id: s for s in workflow.studies()}
    assert studies[image_id].labelled
    stored, stored_grid = read_volume(cineprop_server.studies / "labels" / "final" / f"{image_id}.nii.gz")
    np.testing.assert_array_equal(stored, truth[..., :5])
    assert same_grid(stored_grid, grid)
    again = workflow.submit(cine, truth[..., :5], SEGMENTS, image_id=image_id)   # a correction of the same study
    assert again == image_id

    nxt = workflow.next_study()
    assert nxt is not None and nxt.id in studies and not studies[nxt.id].labelled
    with pytest.raises(WorkflowError, match="no active-learning strategy 'no_such_strategy'"):
        workflow.next_study("no_such_strategy")     # MONAI Label itself would answer a bare HTTP 500


@pytest.fixture
def train_workflow(request, tmp_path):
    """A workflow connected to the app's train server (method ``model``, tiny checkpoint; tests/conftest.py)."""
    try:
        server, _, _ = request.getfixturevalue("cineprop_train_server")
    except pytest.FixtureLookupError:
        pytest.skip("needs the MONAI Label app's cineprop_train_server fixture (tests/conftest.py)")
    wf = CineWorkflow(workdir=tmp_path / "client")
    assert wf.connect(server.url).startswith("Connected to")
    return wf


def test_train_tasks(train_workflow):
    """Submit corrections, then Relearn and Train run the app's train tasks and report progress until they end."""
    workflow = train_workflow
    assert {RELEARN_TASK, IMAGE_TRAIN_TASK} <= set(workflow.info.get("trainers") or {})
    from cineprop.synthetic import moving_shapes

    grid = np.diag([1.0, 1.0, 1.0, 1.0])
    for seed in (7, 8):                                  # two corrected cines, as the Submit button sends them
        frames, truth = moving_shapes(40, 40, 8, labels=1, seed=seed)
        workflow.submit(CineArrays(frames, grid, f"slicer train {seed}"), truth, SEGMENTS[:1])
    for task in (RELEARN_TASK, IMAGE_TRAIN_TASK):
        started = workflow.start_training(task, {"steps": 2})
        assert started.task == task and started.running
        deadline = time.monotonic() + 600
        progress = workflow.training_progress()
        while progress.running and time.monotonic() < deadline:
            time.sleep(2)
            progress = workflow.training_progress()
        assert progress.task == task and progress.status == "DONE", progress.text()


def test_unreachable_after_stop_is_readable(tmp_path):
    client = CinePropClient("http://127.0.0.1:9", timeout=3)
    with pytest.raises(ServerError, match="cannot reach"):
        client.studies()


# -- a secured server: MONAI Label with authentication on ------------------------------------------
LOGIN, PASSWORD = "radiologist", "correct horse battery"


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory):
    """A real server with ``MONAI_LABEL_AUTH_ENABLE=true`` against an OpenID realm on 127.0.0.1.

    The realm (``tests/realm.py``) is only the identity server's side (what Keycloak serves MONAI
    Label); the MONAI Label server, its ``/auth/token`` relay and its token checks are the real ones.
    """
    from realm import Realm
    from servers import prepare_sample_studies, start_server

    root = tmp_path_factory.mktemp("secured")
    studies = root / "studies"
    prepare_sample_studies(studies, ids=["patient080_frame01"], with_support=["patient080_frame01"])
    with Realm(users={LOGIN: (PASSWORD, ["monailabel-user", "monailabel-annotator"])}) as realm:
        server = start_server(studies, env=realm.server_env(), log_path=root / "server.log",
                              headers=realm.bearer(["monailabel-user"]))
        try:
            yield server
        finally:
            server.stop()


def test_secured_server_login_and_every_call_authorised(secured_server, tmp_path):
    """Token from /auth/token; listing, propagating and submitting all carry it; the client id names the user."""
    workflow = CineWorkflow(workdir=tmp_path / "client")
    with pytest.raises(ServerError, match="requires a login: enter your user name and password"):
        workflow.connect(secured_server.url)
    with pytest.raises(ServerError, match=f"Login refused for '{LOGIN}': wrong user name or password"):
        workflow.connect(secured_server.url, LOGIN, "wrong password")
    assert workflow.client is None                       # a failed login leaves nothing half-connected

    status = workflow.connect(secured_server.url, LOGIN, PASSWORD)
    assert status.startswith("Connected to") and f" as {LOGIN}" in status, status
    assert workflow.client.token and workflow.client_id == f"slicer-cineprop-{LOGIN}"
    assert "patient080_frame01" in {s.id for s in workflow.studies()}

    frames, truth, grid = _sample("patient080_frame01")
    cine = CineArrays(frames, grid, "patient080_frame01")
    result = workflow.propagate(cine, _paint(truth, [0]), SEGMENTS, image_id="patient080_frame01")
    assert result.labels.shape == truth.shape and result.support_frames == [0]
    image_id = workflow.submit(CineArrays(frames[..., :4], grid, "secured submit"), truth[..., :4], SEGMENTS)
    stored = secured_server.studies / "labels" / "final" / f"{image_id}.nii.gz"
    assert stored.exists()
    records = "".join(p.read_text() for p in secured_server.studies.rglob("*.json"))
    assert f"slicer-cineprop-{LOGIN}" in records          # the per-user client id reached the datastore

    anonymous = CinePropClient(secured_server.url)       # the same calls without the token are refused
    with pytest.raises(ServerError, match="requires a login") as caught:
        anonymous.studies()
    assert caught.value.status == 401

