"""The MONAI Label app through HTTP against a real server (the session's ``cineprop_server``).

Switching these tests to the learned method is one line: ``servers.TEST_CONF``. The Dice test
compares the server with the *flow* baseline run locally, so it holds for any better method.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder
from servers import SAMPLE, TEST_CONF

from cineprop.io import Cine, Geometry, Volume, read_image, read_label, write_image, write_label
from cineprop.methods import build_propagator
from cineprop.metrics import dice
from cineprop.support import SupportSet, select_support
from cineprop.synthetic import moving_shapes

pytestmark = pytest.mark.slow

SCORED = ["patient001_frame01", "patient080_frame01"]  # have a saved support in the fixture's studies
UNSUPPORTED = "patient022_frame01"  # has none
NAMES = ["right ventricle", "myocardium", "left ventricle"]


def infer(server, image: str, label: Path | None = None, params: dict | None = None, output: str | None = None):
    """POST /infer/cineprop; returns (status, JSON params or error detail, result file bytes or None)."""
    files = {"params": (None, json.dumps(params or {}), "application/json")}
    if label is not None:
        files["label"] = (label.name, label.read_bytes(), "application/octet-stream")
    query = {"image": image, **({"output": output} if output else {})}
    r = requests.post(f"{server.url}/infer/cineprop", params=query, files=files, timeout=300)
    if r.status_code != 200:
        try:
            return r.status_code, r.json().get("detail", r.text), None
        except ValueError:
            return r.status_code, r.text, None
    if not r.headers["content-type"].startswith("multipart/"):
        return r.status_code, r.json(), None
    parts = {p.headers[b"Content-Disposition"].split(b'name="')[1].split(b'"')[0].decode(): p
             for p in MultipartDecoder.from_response(r).parts}
    return r.status_code, json.loads(parts["params"].content), parts["image"].content


def datastore(server) -> dict:
    return requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()


def painted_support(tmp_path: Path, image_id: str, strategy: str = "middle", shots: int = 1) -> tuple[Path, list]:
    """A support file with the ground truth of a few frames of a sample study, and those frames."""
    volume = read_image(SAMPLE / f"{image_id}.nii.gz")
    truth = read_label(SAMPLE / f"{image_id}_label.nii.gz", like=volume).array
    support = select_support(truth, strategy, shots)
    painted = np.zeros_like(truth)
    for frame in support.frames:
        painted[:, :, frame] = support.label_array(frame)
    return write_label(tmp_path / f"{image_id}_support.nii.gz", painted, volume), support.frames


def test_info_lists_task_strategies_and_scoring(cineprop_server):
    info = requests.get(f"{cineprop_server.url}/info/", timeout=30).json()
    task = info["models"]["cineprop"]
    assert task["type"] == "scribbles"  # the stock Slicer module uploads the painted label only for this type
    assert {"support_frames", "flag_threshold", "save_support"} <= set(task["config"])
    assert {"random", "cineprop_uncertain"} <= set(info["strategies"])
    assert "cineprop_confidence" in info["scoring"]
    assert info["cineprop"]["method"] == TEST_CONF.get("method", info["cineprop"]["method"])


def test_infer_with_uploaded_support(cineprop_server, tmp_path):
    """Right shape, exact geometry, label values kept, painted frames kept, Dice ≥ the flow baseline."""
    image_id = UNSUPPORTED
    label, frames = painted_support(tmp_path, image_id)
    label_info = [{"name": n, "id": f"Segment_{i}"} for i, n in enumerate(NAMES, start=1)]
    status, result, data = infer(cineprop_server, image_id, label,
                                 {"result_extension": ".nrrd", "result_dtype": "uint8", "label_info": label_info})
    assert status == 200, result
    out = tmp_path / "result.nrrd"
    out.write_bytes(data)
    image = read_image(SAMPLE / f"{image_id}.nii.gz")
    predicted = read_label(out, like=image)
    assert predicted.shape == image.shape
    for a, b in zip((predicted.geometry.spacing, predicted.geometry.origin, predicted.geometry.direction),
                    (image.geometry.spacing, image.geometry.origin, image.geometry.direction)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    truth = read_label(SAMPLE / f"{image_id}_label.nii.gz", like=image).array
    painted = read_label(label, like=image).array
    for f in frames:  # what was painted on a support frame comes back exactly (per painted label)
        for v in set(np.unique(painted[:, :, f])) - {0}:
            np.testing.assert_array_equal(predicted.array[:, :, f] == v, painted[:, :, f] == v)
    assert set(np.unique(predicted.array)) == {0, 1, 2, 3}
    t = image.shape[2]
    assert result["support_frames"] == frames and len(result["confidence"]) == t
    assert all(result["confidence"][f] == 1.0 for f in frames)
    assert set(result["flagged"]) <= set(range(t)) - set(frames)
    assert result["label_names"] == {n: i for i, n in enumerate(NAMES, start=1)}
    assert result["support_source"] == "upload" and result["latencies"]["total"] > 0

    # The same support through the flow baseline, locally: the server must do at least as well.
    baseline = build_propagator("flow").propagate(Cine(image.array), SupportSet.from_labels(painted)).labels
    query = [i for i in range(t) if i not in frames]
    served = np.mean([dice(predicted.array[:, :, i] == v, truth[:, :, i] == v) for i in query for v in (1, 2, 3)])
    flow = np.mean([dice(baseline[:, :, i] == v, truth[:, :, i] == v) for i in query for v in (1, 2, 3)])
    assert served >= flow - 1e-6, (served, flow)
    assert served > 0.4


def test_infer_uses_saved_support(cineprop_server):
    status, result, data = infer(cineprop_server, SCORED[0], output="json")
    assert status == 200, result
    assert result["support_source"] == "datastore:support" and len(result["support_frames"]) >= 1
    assert data is None  # output=json: only the JSON part


def test_user_errors_are_4xx_with_a_message(cineprop_server, tmp_path):
    before = datastore(cineprop_server)
    status, detail, _ = infer(cineprop_server, UNSUPPORTED)
    assert status == 422 and "no support" in detail
    status, detail, _ = infer(cineprop_server, "no_such_study")
    assert status == 404 and "no_such_study" in detail
    wrong, _ = painted_support(tmp_path, "patient001_frame01")  # 256×216×10 onto a 256×216×6 study
    status, detail, _ = infer(cineprop_server, "patient080_frame01", wrong)
    assert status == 422 and "differs from image shape" in detail and "uploaded label" in detail
    status, detail, _ = infer(cineprop_server, SCORED[0], params={"flag_threshold": "high"})
    assert status == 400 and "flag_threshold" in detail
    status, detail, _ = infer(cineprop_server, SCORED[0], params={"result_dtype": "float32"})
    assert status == 400 and "result_dtype" in detail
    status, detail, _ = infer(cineprop_server, SCORED[0], params={"support_frames": [99]})
    assert status == 422 and "99" in detail
    empty = write_label(tmp_path / "empty.nii.gz", np.zeros((256, 216, 6), np.uint8),
                        read_image(SAMPLE / "patient080_frame01.nii.gz"))
    status, detail, _ = infer(cineprop_server, "patient080_frame01", empty)
    assert status == 422 and "no support" in detail
    after = datastore(cineprop_server)
    assert {k: v["labels"] for k, v in after["objects"].items() if k in before["objects"]} == \
           {k: v["labels"] for k, v in before["objects"].items()}  # nothing written by failed requests


def test_4d_study_and_save_support(cineprop_server, tmp_path):
    """H×W×Z×T: only the painted slice position is propagated; save_support stores what was used."""
    frames, truth = moving_shapes(40, 48, 8, labels=2, seed=5)
    image4d = np.stack([frames, frames[::-1], frames], axis=2)  # 40×48×3×8
    geometry = Geometry((1.2, 1.2, 8.0, 30.0), (5.0, -3.0, 1.0, 0.0), tuple(np.eye(4).ravel().tolist()))
    path = write_image(tmp_path / "cine4d.nii.gz", image4d, geometry)
    r = requests.put(f"{cineprop_server.url}/datastore/image", params={"image": "cine4d"},
                     files={"file": ("cine4d.nii.gz", path.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    painted = np.zeros(image4d.shape, np.uint8)
    painted[:, :, 1, 0] = truth[:, :, 0]
    painted[:, :, 1, 5] = truth[:, :, 5]  # painted too but not chosen below
    label = write_label(tmp_path / "cine4d_support.nii.gz", painted, Volume(image4d, geometry))
    status, result, data = infer(cineprop_server, "cine4d", label, {"support_frames": "0", "save_support": True})
    assert status == 200, result
    out = tmp_path / "out.nii.gz"
    out.write_bytes(data)
    predicted = read_label(out).array
    assert predicted.shape == image4d.shape
    assert not predicted[:, :, [0, 2]].any() and all(predicted[:, :, 1, i].any() for i in range(8))
    assert [c["slice_index"] for c in result["cines"]] == [1] and result["support_frames"] == [0]
    saved = Path(cineprop_server.studies) / "labels" / "support" / "cine4d.nii.gz"
    expected = np.zeros_like(painted)
    expected[:, :, 1, 0] = truth[:, :, 0]
    np.testing.assert_array_equal(read_label(saved).array, expected)  # frame 5 was not used: not saved
    status, again, data2 = infer(cineprop_server, "cine4d")
    assert status == 200 and again["support_source"] == "datastore:support"
    (tmp_path / "again.nii.gz").write_bytes(data2)
    np.testing.assert_array_equal(read_label(tmp_path / "again.nii.gz").array, predicted)


def test_scoring_and_uncertain_strategy(cineprop_server):
    url = cineprop_server.url
    scored = requests.post(f"{url}/scoring/cineprop_confidence", params={"run_sync": "true"}, json={},
                           timeout=300).json()
    assert set(SCORED) <= set(scored["scored"]) and UNSUPPORTED in scored["no_support"]
    again = requests.post(f"{url}/scoring/cineprop_confidence", params={"run_sync": "true"}, json={},
                          timeout=300).json()
    assert set(SCORED) <= set(again["up_to_date"]) and not again["scored"]  # nothing changed: not recomputed
    # The stored score is the infer's mean confidence over the query frames.
    _, result, _ = infer(cineprop_server, SCORED[0], output="json")
    query = [c for i, c in enumerate(result["confidence"]) if i not in result["support_frames"]]
    objects = datastore(cineprop_server)["objects"]
    assert objects[SCORED[0]]["image"]["info"]["cineprop"]["mean_confidence"] == pytest.approx(np.mean(query),
                                                                                                abs=1e-3)

    def expected_next() -> str:
        objects = datastore(cineprop_server)["objects"]
        candidates = {k: v["image"]["info"]["cineprop"] for k, v in objects.items()
                      if "final" not in v["labels"] and "mean_confidence" in v["image"]["info"].get("cineprop", {})}
        return min(candidates, key=lambda k: (candidates[k]["mean_confidence"], -candidates[k]["flagged"], k))

    first = requests.post(f"{url}/activelearning/cineprop_uncertain", timeout=60).json()
    assert first["id"] == expected_next() and first["mean_confidence"] <= 1.0

    # A study of our own that the stored scores make the least confident (sample studies are never finalised
    # here: other suites share this server), then its corrected label submitted as final, as Slicer does.
    image = SAMPLE / "patient022_frame01.nii.gz"
    r = requests.put(f"{url}/datastore/image", params={"image": "al_study"},
                     files={"file": (image.name, image.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    r = requests.put(f"{url}/datastore/image/info", params={"image": "al_study"},
                     data={"info": json.dumps({"cineprop": {"mean_confidence": 0.0, "flagged": 7}})}, timeout=60)
    assert r.status_code == 200, r.text
    assert requests.post(f"{url}/activelearning/cineprop_uncertain", timeout=60).json()["id"] == "al_study"
    truth = SAMPLE / "patient022_frame01_label.nii.gz"
    r = requests.put(f"{url}/datastore/label", params={"image": "al_study"},
                     files={"label": ("al_study.nii.gz", truth.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    after = requests.post(f"{url}/activelearning/cineprop_uncertain", timeout=60).json()
    assert after["id"] != "al_study" and after["id"] == expected_next()  # finished studies leave the queue
    assert requests.post(f"{url}/activelearning/random", timeout=60).json()["id"] != "al_study"


def test_batch_infer_labels_every_study_with_a_support(cineprop_server):
    url = cineprop_server.url
    task = requests.post(f"{url}/batch/infer/cineprop", params={"images": "all"}, json={"multi_gpu": False},
                         timeout=60).json()
    assert task["status"] in ("SUBMITTED", "RUNNING"), task
    deadline = time.time() + 240
    while True:
        status = requests.get(f"{url}/batch/infer", timeout=30).json()
        if status["status"] not in ("SUBMITTED", "RUNNING") or time.time() > deadline:
            break
        time.sleep(1)
    assert status["status"] == "DONE", "\n".join(status.get("details", [])) + cineprop_server.log_tail()
    objects = datastore(cineprop_server)["objects"]
    supported = {k for k, v in objects.items() if "support" in v["labels"] or "final" in v["labels"]}
    assert set(SCORED) <= supported
    for image_id, obj in objects.items():
        assert ("original" in obj["labels"]) == (image_id in supported), image_id
    label = Path(cineprop_server.studies) / "labels" / "original" / f"{SCORED[1]}.nii.gz"
    assert read_label(label, like=read_image(SAMPLE / f"{SCORED[1]}.nii.gz")).array.any()
    log = cineprop_server.log_path.read_text(errors="replace")
    assert re.search(r"=> cpu => \d+ / \d+", log) and "cineprop batch:" in log  # progress in the server log
