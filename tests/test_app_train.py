"""The app's train tasks on a REAL MONAI Label server (``cineprop_train_server``, tests/conftest.py).

``cineprop_relearn`` relearns label-free over the studies with a saved support and publishes
``model/cineprop.pt``, which the next inference uses; ``cineprop_image`` fine-tunes on final labels
submitted through the datastore API and publishes only when held-back studies validate better.
Tests run in file order on one server: the refusal test needs the datastore without final labels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from cineprop.checkpoints import load_model
from cineprop.model import FewShotSegmenter, VideoSegmenter
from servers import TRAIN_STUDIES, TRAIN_SUPPORTED, wait_for_training

# The tests of this module are the steps of one scenario on one server, in file order (the refusal needs the
# datastore before any final label, the listing before any training); under `--random-order` the module's
# place in the suite is shuffled, its steps are not.
pytestmark = [pytest.mark.slow, pytest.mark.random_order(disabled=True)]


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` → sha1 of its content (the datastore index left out: it records reads)."""
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("datastore_v2.json"):
                out[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def _info(server) -> dict:
    response = requests.get(server.url + "/info/", timeout=60)
    response.raise_for_status()
    return response.json()


def _train(server, task: str, params: dict) -> dict:
    response = requests.post(f"{server.url}/train/{task}", json=params, timeout=60)
    assert response.status_code == 200, response.text
    record = wait_for_training(server)
    assert record["request"]["model"] == task
    return record


def _infer(server, image_id: str, support: Path) -> dict:
    with open(support, "rb") as f:
        response = requests.post(f"{server.url}/infer/cineprop", params={"image": image_id, "output": "json"},
                                 files={"label": (support.name, f), "params": (None, json.dumps({}))}, timeout=300)
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{server.log_tail()}"
    return response.json()


def test_train_tasks_are_listed_with_their_options(cineprop_train_server):
    server, _, checkpoint = cineprop_train_server
    info = _info(server)
    assert set(info["trainers"]) == {"cineprop_relearn", "cineprop_image"}
    assert info["trainers"]["cineprop_image"]["config"] == {"steps": 150, "lr": 2e-4, "val_fraction": 0.25, "batch": 8}
    assert set(info["trainers"]["cineprop_relearn"]["config"]) == {"steps", "lr", "steps_per_cine"}
    assert info["train_stats"] == {"cineprop_relearn": {}, "cineprop_image": {}}
    assert info["cineprop"]["checkpoint"] == str(checkpoint)


def test_training_without_final_labels_is_refused_and_changes_nothing(cineprop_train_server):
    server, _, _ = cineprop_train_server
    before = _snapshot(server.studies, server.app_dir / "model")
    sync = requests.post(f"{server.url}/train/cineprop_image", params={"run_sync": "true"}, json={"steps": 1},
                         timeout=120)
    assert sync.status_code == 422 and "at least 2 studies" in sync.json()["detail"]
    assert "has 0" in sync.json()["detail"]
    bad = requests.post(f"{server.url}/train/cineprop_relearn", params={"run_sync": "true"}, json={"steps": "many"},
                        timeout=120)
    assert bad.status_code == 400 and "steps: expected an integer" in bad.json()["detail"]
    record = _train(server, "cineprop_image", {"steps": 1})                   # as Slicer runs it: a subprocess
    assert record["status"] == "ERROR"
    assert any("cineprop_image: failed: fine-tuning needs final labels of at least 2 studies" in line
               for line in record["details"]), record["details"]
    assert _snapshot(server.studies, server.app_dir / "model") == before
    assert not (server.app_dir / "model" / "cineprop.pt").exists()


def test_relearn_publishes_a_checkpoint_the_next_inference_uses(cineprop_train_server):
    server, truth, checkpoint = cineprop_train_server
    published = server.app_dir / "model" / "cineprop.pt"
    support = server.studies / "labels" / "support" / f"{TRAIN_SUPPORTED[0]}.nii.gz"
    assert _infer(server, "study2", support)["checkpoint"] == str(checkpoint)
    record = _train(server, "cineprop_relearn", {"steps": "3", "steps_per_cine": 1})
    assert record["status"] == "DONE", "\n".join(record["details"])
    model, payload = load_model(published)
    assert payload["kind"] == "relearn" and isinstance(model, VideoSegmenter) and payload["meta"]["steps"] == 3
    assert payload["meta"]["studies"] == list(TRAIN_SUPPORTED)
    stats = _info(server)["train_stats"]["cineprop_relearn"]
    assert stats["published"] and stats["checkpoint"] == str(published) and stats["steps"] == 3
    assert stats["studies"] == {i: "support" for i in TRAIN_SUPPORTED} and stats["start_checkpoint"] == str(checkpoint)
    assert stats["previous"] is None
    assert "cineprop_relearn: step 3/3" in server.log_path.read_text()
    result = _infer(server, "study2", support)                                # no restart
    assert result["checkpoint"] == str(published) and result["method"] == "model"
    assert _info(server)["cineprop"]["checkpoint"] == str(published)
    assert f"checkpoint changed ({published})" in server.log_path.read_text()


def test_image_training_publishes_only_when_validation_improves(cineprop_train_server):
    server, truth, _ = cineprop_train_server
    model_dir = server.app_dir / "model"
    for image_id in TRAIN_STUDIES:                                            # the users' corrections
        with open(truth / f"{image_id}.nii.gz", "rb") as f:
            r = requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                             files={"label": (f"{image_id}.nii.gz", f)}, timeout=60)
        assert r.status_code == 200, r.text
    before = _snapshot(model_dir)
    published = model_dir / "cineprop.pt"
    record = _train(server, "cineprop_image", {"steps": 2, "lr": 0, "batch": 2})   # lr 0 cannot improve
    assert record["status"] == "DONE", "\n".join(record["details"])
    stats = _info(server)["train_stats"]["cineprop_image"]
    assert not stats["published"] and stats["val_after"] == pytest.approx(stats["val_before"])
    assert "nothing published" in stats["decision"] and stats["checkpoint"] is None
    assert len(stats["val_studies"]) >= 1 and set(stats["train_studies"]) | set(stats["val_studies"]) == \
        set(TRAIN_STUDIES)
    after = _snapshot(model_dir)
    assert {k: v for k, v in after.items() if "train_stats" not in k} == \
        {k: v for k, v in before.items() if "train_stats" not in k}        # only the stats file changed

    relearned = hashlib.sha1(published.read_bytes()).hexdigest() if published.exists() else None
    record = _train(server, "cineprop_image", {"steps": 60, "lr": 0.003, "batch": 6})
    assert record["status"] == "DONE", "\n".join(record["details"])
    stats = _info(server)["train_stats"]["cineprop_image"]
    assert stats["published"] and stats["val_after"] > stats["val_before"], stats
    model, payload = load_model(published)
    assert payload["kind"] == "image" and type(model) is FewShotSegmenter
    assert payload["meta"]["finetune"]["val_after"] == pytest.approx(stats["val_after"])
    if relearned:                                                             # the replaced checkpoint is kept
        assert hashlib.sha1((model_dir / "cineprop.prev.pt").read_bytes()).hexdigest() == relearned
    result = _infer(server, "study3", server.studies / "labels" / "support" / f"{TRAIN_SUPPORTED[0]}.nii.gz")
    assert result["checkpoint"] == str(published)
    assert np.isfinite(result["confidence"]).all()
