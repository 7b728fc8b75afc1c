"""REST client pieces that need no cineprop server: addresses, unreachable servers, the multipart codec.

The multipart decoder is checked against ``requests_toolbelt.MultipartEncoder``, the encoder MONAI
Label 0.8.5 itself uses for infer answers (``endpoints/infer.py``).
"""

from __future__ import annotations

import gzip
import json
import socket

import pytest

from CinePropLib.client import (
    CinePropClient,
    ServerError,
    decode_multipart,
    encode_multipart,
    normalise_url,
    remember_url,
)
from CinePropLib.workflow import CLIENT_ID, CineWorkflow, default_client_id, describe_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    (" http://localhost:8000/ ", "http://localhost:8000"),
    ("https://example.org/monai", "https://example.org/monai"),
])
def test_addresses_are_normalised(given, expected):
    assert normalise_url(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://host", "http://"])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(ServerError):
        normalise_url(bad)


def test_unreachable_server_gives_one_readable_line():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ServerError) as caught:
        CinePropClient(url, timeout=5).info()
    message = str(caught.value)
    assert message.startswith("Connecting: cannot reach the cineprop server at " + url)
    assert "\n" not in message and "Traceback" not in message
    workflow = CineWorkflow()
    with pytest.raises(ServerError):
        workflow.connect(url)
    assert workflow.client is None                      # a failed connect keeps the old state


def test_error_bodies_become_messages():
    fastapi = CinePropClient._http_error("Propagating", 422, json.dumps({"detail": "no support frames"}).encode())
    assert str(fastapi) == "Propagating: no support frames (HTTP 422)" and fastapi.status == 422
    validation = CinePropClient._http_error(
        "Starting cineprop_image", 422,
        json.dumps({"detail": [{"loc": ["query", "enqueue"], "msg": "Input should be a valid boolean"}]}).encode())
    assert "enqueue: Input should be a valid boolean" in str(validation)
    bare = CinePropClient._http_error("Propagating", 500, b"Internal Server Error")
    assert "internal error (HTTP 500)" in str(bare) and "server log" in str(bare)
    assert describe_error(bare) == str(bare)
    assert describe_error(KeyError("x")).startswith("Unexpected error (KeyError")


def test_multipart_decoder_reads_monailabels_encoder(tmp_path):
    from requests_toolbelt import MultipartEncoder

    label = gzip.compress(bytes(range(256)) * 64)       # binary, with CR/LF bytes inside
    answer = {"confidence": [1.0, 0.42], "flagged": [1], "label_names": {"LV": 3}}
    encoder = MultipartEncoder(fields={"params": (None, json.dumps(answer), "application/json"),
                                       "image": ("result.nii.gz", label, "application/octet-stream")})
    fields, files = decode_multipart(encoder.to_string(), encoder.content_type)
    assert json.loads(fields["params"]) == answer
    assert files["image"] == ("result.nii.gz", label)


def test_multipart_encoder_round_trip():
    body, ctype = encode_multipart({"params": json.dumps({"a": 1})}, {"label": ("s.nii.gz", b"\r\n--x\x00\xff")})
    fields, files = decode_multipart(body, ctype)
    assert fields == {"params": '{"a": 1}'} and files == {"label": ("s.nii.gz", b"\r\n--x\x00\xff")}


def test_study_summary_shows_tags_and_score():
    from CinePropLib.client import Study

    plain = Study("cine01")
    assert plain.summary() == "cine01" and not plain.labelled
    scored = Study("cine02", ("final", "support"), {"cineprop": {"mean_confidence": 0.8234, "flagged": 3}})
    assert scored.summary() == "cine02 — final, support · confidence 0.82, 3 flagged" and scored.labelled


def test_missing_tasks_are_refused_before_any_request():
    """MONAI Label answers a bare HTTP 500 for an unknown task; the workflow names what is missing."""
    from CinePropLib.workflow import WorkflowError

    workflow = CineWorkflow(CinePropClient(f"http://127.0.0.1:{_free_port()}"))  # nothing listens there
    workflow.info = {"models": {"cineprop": {}}, "trainers": {}, "strategies": {"random": {}}}
    with pytest.raises(WorkflowError, match="no train task 'cineprop_relearn' .it has: none."):
        workflow.start_training("cineprop_relearn")
    with pytest.raises(WorkflowError, match="no active-learning strategy 'cineprop_uncertain' .it has: random."):
        workflow.next_study()


def test_recent_addresses_most_recent_first_without_repeats():
    recent = remember_url([], "127.0.0.1:8000/")
    assert recent == ["http://127.0.0.1:8000"]
    recent = remember_url(recent + ["https://a.example:8000"], "https://a.example:8000")
    assert recent == ["https://a.example:8000", "http://127.0.0.1:8000"]
    assert len(remember_url([f"http://h{i}:8000" for i in range(20)], "http://new:8000", limit=8)) == 8
    with pytest.raises(ServerError):
        remember_url(recent, "ftp://nope")


def test_client_id_names_the_user():
    assert default_client_id("Dr. Ana Díaz") == f"{CLIENT_ID}-Dr._Ana_D_az"
    assert default_client_id("").startswith(CLIENT_ID)


def test_login_without_credentials_asks_for_them_before_any_request():
    client = CinePropClient("http://127.0.0.1:9")                     # nothing listens there
    for user, password in (("", "x"), ("user", "")):
        with pytest.raises(ServerError, match="requires a login: enter your user name and password"):
            client.login(user, password)
    assert client.token is None
