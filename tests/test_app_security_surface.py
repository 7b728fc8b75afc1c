"""Attacks on MONAI Label's side doors, against the shared real server (``cineprop_server``, default settings).

Each test asserts that the attack fails *and* that nothing was written where it should not be: no
new file outside the studies folder and the server's temporary folder (the server's working
directory is the studies folder's parent), no file left in the temporary folder, and, where the
attack aims at it, no change in the studies folder.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import requests
from security_helpers import Snapshot, zip_of_zeros

pytestmark = pytest.mark.slow

STUDY = "patient080_frame01"  # sample study with a saved support (tag "support")


def support_bytes(server) -> bytes:
    return (server.studies / "labels" / "support" / f"{STUDY}.nii.gz").read_bytes()


def test_sessions_never_unpack_and_never_show_server_paths(cineprop_server, tmp_path):
    server, snap = cineprop_server, Snapshot(cineprop_server)
    target = server.studies.parent / "planted.txt"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        for name in ("../../planted.txt", str(target)):
            info = tarfile.TarInfo(name)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"pwn\n"))
    r = requests.put(f"{server.url}/session/", params={"uncompress": "true"}, timeout=60,
                     files={"files": ("cine.tar", tar.getvalue())})
    assert r.status_code == 400 and "uncompress" in r.json()["detail"], r.text
    # Session uploads are checked like datastore uploads, stored under their own name, and no path is shown.
    r = requests.put(f"{server.url}/session/", timeout=60, files={"files": ("../../../evil.nii.gz", b"\x01" * 4096)})
    assert r.status_code == 422, r.text
    image = (server.studies / f"{STUDY}.nii.gz").read_bytes()
    r = requests.put(f"{server.url}/session/", timeout=60, files={"files": ("../../../evil.nii.gz", image)})
    assert r.status_code == 200, r.text
    session = r.json()["session_id"]
    shown = json.dumps(r.json()) + requests.get(f"{server.url}/session/{session}", timeout=30).text
    assert str(server.studies) not in shown and "/tmp" not in shown and "evil" not in shown
    r = requests.post(f"{server.url}/infer/cineprop", params={"session_id": session, "output": "json"}, timeout=300,
                      files={"label": ("support.nii.gz", support_bytes(server)), "params": (None, "{}")})
    assert r.status_code == 200 and r.json()["support_source"] == "upload", r.text
    assert not target.exists() and not Path("/planted.txt").exists()
    snap.assert_nothing_outside()


def test_side_doors_are_not_served(cineprop_server):
    server = cineprop_server
    secret = server.studies.parent / "outside_secret.nii.gz"  # a server file outside the studies folder
    secret.write_bytes(support_bytes(server))
    snap = Snapshot(server)
    params = json.dumps({"label": str(secret)})
    attacks = [("POST", "/infer/wsi/cineprop", {"image": str(secret)}, {"params": (None, params)}),
               ("POST", "/infer/wsi_v2/cineprop", {"image": str(secret)}, {"params": (None, params)}),
               ("GET", "/logs/", {"lines": "100"}, None), ("GET", "/logs/gpu", None, None),
               ("POST", "/reload", None, None), ("PUT", "/model/cineprop", None, {"file": ("m.pt", b"x")}),
               ("DELETE", "/model/cineprop", None, None), ("GET", "/ohif/index.html", None, None),
               ("GET", "/proxy/dicom/wado/x", None, None)]
    for method, path, query, files in attacks:
        r = requests.request(method, server.url + path, params=query, files=files, timeout=60)
        assert r.status_code == 404 and "not served" in r.json()["detail"], (method, path, r.status_code, r.text[:200])
        assert str(secret) not in r.text
    documented = requests.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    assert not [p for p in documented if p.startswith(("/infer/wsi", "/logs", "/ohif", "/proxy", "/reload"))]
    assert "put" not in documented.get("/model/{model}", {})
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    snap.assert_nothing_outside()


def test_web_pages_from_other_origins_are_refused(cineprop_server):
    server, snap = cineprop_server, Snapshot(cineprop_server)
    foreign = "http://evil.example"
    r = requests.options(f"{server.url}/datastore/image", timeout=30,
                         headers={"Origin": foreign, "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, (r.status_code, r.headers)
    image = (server.studies / f"{STUDY}.nii.gz").read_bytes()
    for headers in ({"Origin": foreign}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    # DNS rebinding: the page's own host name now points to 127.0.0.1
                    {"Origin": f"http://rebind.example:{server.port}", "Host": f"rebind.example:{server.port}"}):
        r = requests.put(f"{server.url}/datastore/image", params={"image": "drive_by"}, headers=headers, timeout=60,
                         files={"file": ("x.nii.gz", image)})
        assert r.status_code == 403, (headers, r.status_code, r.text)
        r = requests.post(f"{server.url}/train/", headers=headers, timeout=30)  # a "simple" form POST
        assert r.status_code == 403, (headers, r.status_code, r.text)
    assert not list(server.studies.glob("drive_by*"))
    own = {"Origin": server.url}  # pages the server serves itself (its /docs), and clients that send no Origin
    assert requests.get(f"{server.url}/info/", headers=own, timeout=30).status_code == 200
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    snap.assert_nothing_outside()


def test_upload_bombs_are_refused_in_seconds_and_leave_nothing(cineprop_server, tmp_path):
    server, snap = cineprop_server, Snapshot(cineprop_server)
    studies_before = snap.studies()
    zip_bomb = zip_of_zeros(tmp_path / "bomb.zip", "f0.dcm", 700)
    header_bomb = tmp_path / "huge.nii.gz"
    import gzip

    import nibabel as nib
    import numpy as np

    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 16000))  # declares 256 G voxels in a file of a few hundred bytes
    header.set_data_dtype(np.uint8)
    header_bomb.write_bytes(gzip.compress(header.binaryblock + b"\0" * (4 + 1 << 20)))
    for path, name in ((zip_bomb, "bomb.zip"), (header_bomb, "huge.nii.gz")):
        start = time.monotonic()
        with open(path, "rb") as f:
            r = requests.put(f"{server.url}/datastore/image", params={"image": "bomb"}, files={"file": (name, f)},
                             timeout=120)
        assert r.status_code in (413, 422) and "upload 'bomb'" in r.json()["detail"], r.text
        assert time.monotonic() - start < 20, f"{name}: refused only after {time.monotonic() - start:.0f} s"
    assert snap.studies() == studies_before
    snap.assert_nothing_outside()


def test_refused_requests_leave_no_temporary_files(cineprop_server):
    server, snap = cineprop_server, Snapshot(cineprop_server)
    studies_before = snap.studies()
    junk = b"\x01" * (8 << 20)
    label = support_bytes(server)
    for _ in range(3):
        calls = [
            requests.put(f"{server.url}/datastore/image", params={"image": "junk"}, files={"file": ("j.nii.gz", junk)},
                         timeout=60),  # 422
            requests.put(f"{server.url}/datastore/image", params={"image": "../x"}, files={"file": ("j.nii.gz", junk)},
                         timeout=60),  # 400
            requests.put(f"{server.url}/datastore/label", params={"image": "nope"}, files={"label": ("l.nii.gz", label)},
                         timeout=60),  # 404
            requests.put(f"{server.url}/datastore/label", params={"image": STUDY, "tag": "junk"}, timeout=60,
                         files={"label": ("l.nii.gz", junk)}),  # 422
            requests.post(f"{server.url}/infer/cineprop", params={"image": STUDY, "output": "json"}, timeout=60,
                          files={"label": ("l.nii.gz", junk), "params": (None, "{}")}),  # 422
            requests.post(f"{server.url}/infer/cineprop", params={"output": "json"}, timeout=60,
                          files={"file": ("f.nii.gz", junk), "params": (None, "{}")}),  # 422
        ]
        assert [r.status_code for r in calls] == [422, 400, 404, 422, 422, 422], [(r.status_code, r.text[:80]) for r in calls]
    assert snap.studies() == studies_before
    # The dataset zip MONAI Label wrote to the temporary folder and never removed: needs a final label.
    image = (server.studies / f"{STUDY}.nii.gz").read_bytes()
    assert requests.put(f"{server.url}/datastore/image", params={"image": "dataset_case"}, timeout=60,
                        files={"file": ("d.nii.gz", image)}).status_code == 200
    assert requests.put(f"{server.url}/datastore/label", params={"image": "dataset_case", "tag": "final"}, timeout=60,
                        files={"label": ("l.nii.gz", label)}).status_code == 200
    for _ in range(2):
        r = requests.get(f"{server.url}/datastore/dataset", timeout=60)
        assert r.status_code == 200, r.text
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            assert "label/dataset_case.nii.gz" in archive.namelist(), archive.namelist()
    snap.assert_nothing_outside()


def test_ids_that_are_not_plain_names_are_refused(cineprop_server):
    server, snap = cineprop_server, Snapshot(cineprop_server)
    studies_before = snap.studies()
    image = (server.studies / f"{STUDY}.nii.gz").read_bytes()
    for bad in ("x.nii.gz", "x.nrrd", "a\x85b", "evil\u202egnp", "star*", "trailing ", "labels", "originals",
                "datastore_v2.json", "é" * 150):
        r = requests.put(f"{server.url}/datastore/image", params={"image": bad}, files={"file": ("x.nii.gz", image)},
                         timeout=60)
        assert r.status_code == 400, (bad, r.status_code, r.text[:200])
        if bad.endswith((".nii.gz", ".nrrd")):
            continue  # a suffix is refused in image ids only (the id would not read back); tags never get one
        r = requests.put(f"{server.url}/datastore/label", params={"image": STUDY, "tag": bad}, timeout=60,
                         files={"label": ("l.nii.gz", support_bytes(server))})
        assert r.status_code == 400, (bad, r.status_code, r.text[:200])
    for name in ("x.nii.gz" + "z" * 300, "x\x00.nii.gz", "x.bin"):
        r = requests.post(f"{server.url}/infer/cineprop", params={"image": STUDY, "output": "json"}, timeout=60,
                          files={"label": (name, support_bytes(server)), "params": (None, "{}")})
        assert r.status_code == 400, (name, r.status_code, r.text[:200])
    r = requests.post(f"{server.url}/batch/infer/cineprop", params={"run_sync": "true"}, timeout=60,
                      json={"label": str(server.studies / "labels" / "support" / f"{STUDY}.nii.gz"), "multi_gpu": False})
    assert r.status_code == 400 and "label" in r.json()["detail"], r.text
    assert snap.studies() == studies_before
    snap.assert_nothing_outside()


def test_answers_carry_no_server_paths(cineprop_server):
    server = cineprop_server
    answers = {"next sample": requests.post(f"{server.url}/activelearning/random", timeout=60),
               "image info": requests.get(f"{server.url}/datastore/image/info", params={"image": STUDY}, timeout=30),
               "datastore": requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30)}
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.text[:200])
        assert str(server.studies.parent) not in r.text, (name, r.text[:300])
    assert answers["image info"].json()["name"] == f"{STUDY}.nii.gz"


def test_volumes_with_broken_headers_are_refused(cineprop_server, tmp_path):
    from inputs_factory import write_raw_nifti
    from test_inputs_headers import BROKEN

    server, snap = cineprop_server, Snapshot(cineprop_server)
    studies_before = snap.studies()
    for case, (fields, words) in BROKEN.items():
        path = write_raw_nifti(tmp_path / "broken.nii.gz", **fields)
        r = requests.put(f"{server.url}/datastore/image", params={"image": "broken"}, timeout=60,
                         files={"file": ("broken.nii.gz", path.read_bytes())})
        assert r.status_code == 422 and words in r.json()["detail"], (case, r.status_code, r.text[:200])
    assert snap.studies() == studies_before
    snap.assert_nothing_outside()
