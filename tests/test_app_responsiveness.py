"""MONAI Label blocks its event loop while an inference runs; the app's ``infer_threads`` fixes that.

Measured through HTTP on real servers: a ``GET /info/`` sent while a long propagation runs. With
``--conf infer_threads 0`` (MONAI Label's own infer endpoint) it is answered only when the
inference ends; with the default (inference in a worker thread) it is answered before. Only the
order of events is asserted (no absolute times); ``bench/bench_server.py`` reports the numbers.
"""

from __future__ import annotations

import pytest
import requests
from servers import TEST_CONF, info_during_infer, start_server, synthetic_study

pytestmark = pytest.mark.slow

# Long enough (about 1.5–3 s with the flow method on 2 cores) that the order cannot flip by chance.
FRAMES, SUPPORT = 60, (0, 59)


@pytest.fixture(scope="module")
def blocking_server(tmp_path_factory):
    studies = tmp_path_factory.mktemp("blocking") / "studies"
    studies.mkdir()
    support = synthetic_study(studies, "long_cine", frames=FRAMES, support_frames=SUPPORT)
    server = start_server(studies, conf={**TEST_CONF, "infer_threads": "0"}, log_path=studies.parent / "server.log")
    try:
        yield server, support
    finally:
        server.stop()


def test_monailabel_endpoint_blocks_info_during_infer(blocking_server):
    server, support = blocking_server
    t = info_during_infer(server, "long_cine", support)
    assert t["status"] == 200
    assert t["info_done"] >= t["infer_done"] - 0.1, t  # /info waited for the inference


def test_threaded_infer_keeps_info_responsive(cineprop_server, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    support = synthetic_study(staging, "long_cine", frames=FRAMES, support_frames=SUPPORT)
    image = staging / "long_cine.nii.gz"
    r = requests.put(f"{cineprop_server.url}/datastore/image", params={"image": "long_cine"},
                     files={"file": (image.name, image.read_bytes())}, timeout=120)
    assert r.status_code == 200, r.text
    t = info_during_infer(cineprop_server, "long_cine", support)
    assert t["status"] == 200
    assert t["info_done"] < t["infer_done"] - 0.2, t  # answered while the inference was running
