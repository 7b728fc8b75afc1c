"""A small REST client for a cineprop MONAI Label server (Python standard library only).

Every failure becomes a :class:`ServerError` whose message is one readable line (what failed, why,
what to do), because the panel shows it to a radiologist as is. Endpoints are MONAI Label 0.8.5's
(see ``docs/monailabel.md``):

============================  ===============================================================
``GET  /info/``               app name, models (infer tasks), trainers, strategies, labels
``GET  /datastore/?output=all``  the study list with label tags
``GET  /datastore/image``     download a study's cine
``PUT  /datastore/image``     add a cine to the datastore (multipart ``file``)
``PUT  /session/``            upload a cine for this session only (multipart ``files``)
``POST /infer/{model}``       propagate: ``image`` or ``session_id``, multipart ``label`` + ``params``
``PUT  /datastore/label``     save a label (tag ``final`` = approved by a person)
``POST /train/{model}``       start a train task; ``GET /train/`` its progress, ``DELETE`` stops it
``POST /activelearning/{s}``  the next study to annotate
``GET  /auth/``               whether authentication is on
``POST /auth/token``          log in (user name + password → bearer token), as MONAI Label's Slicer plugin does
============================  ===============================================================
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Mapping

#: Default server address (``make run`` serves here).
DEFAULT_URL = "http://127.0.0.1:8000"
#: How many server addresses the panel remembers (application settings).
RECENT_URLS = 8


def remember_url(recent: list[str], url: str, limit: int = RECENT_URLS) -> list[str]:
    """``url`` first, then the other ``recent`` addresses (no repeats), at most ``limit``."""
    url = normalise_url(url)
    return [url, *[u for u in recent if u and u != url]][:limit]


class ServerError(Exception):
    """A request that failed; ``str(error)`` is a one-line message for the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Study:
    """One image of the server's datastore."""

    id: str
    label_tags: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        """Whether a person approved a label for it (tag ``final``)."""
        return "final" in self.label_tags

    def summary(self) -> str:
        """One line for the study list, e.g. ``patient001 — final, support · confidence 0.82, 2 flagged``."""
        text = f"{self.id} — {', '.join(sorted(self.label_tags))}" if self.label_tags else self.id
        score = self.info.get("cineprop")  # written by the app's cineprop_confidence scoring method
        if isinstance(score, dict) and "mean_confidence" in score:
            text += f" · confidence {float(score['mean_confidence']):.2f}, {int(score.get('flagged', 0))} flagged"
        return text


@dataclass
class InferResponse:
    """What ``POST /infer`` returned: the label file (saved locally) and the JSON part."""

    label_path: Path | None
    params: dict


def normalise_url(url: str) -> str:
    """``127.0.0.1:8000/`` → ``http://127.0.0.1:8000``; refuses what is not an http(s) address."""
    url = (url or "").strip()
    if not url:
        raise ServerError("Enter the server address, e.g. http://127.0.0.1:8000")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"'{url}' is not a server address; use e.g. http://127.0.0.1:8000")
    return url.rstrip("/")


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode a ``multipart/form-data`` body; returns ``(body, content_type)``."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks += [f"--{boundary}\r\n".encode(),
                   f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode(),
                   str(value).encode("utf-8"), b"\r\n"]
    for name, (filename, data) in files.items():
        chunks += [f"--{boundary}\r\n".encode(),
                   f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode(),
                   b"Content-Type: application/octet-stream\r\n\r\n", data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def decode_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Decode a ``multipart/form-data`` response → ``(fields, files)``; files are ``{name: (filename, bytes)}``."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise ServerError("the server sent a malformed multipart response")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode("utf-8")
    return fields, files


def _detail(body: bytes) -> str:
    """The readable part of an error body: FastAPI's ``{"detail": ...}`` or the plain text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        return text[:300]
    if isinstance(detail, list):  # request validation errors: [{"loc": [...], "msg": ...}]
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg', '')}"
                         if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)[:300]


def _safe_name(name: str) -> str:
    """A file/id-safe version of a node or study name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "cine"


class CinePropClient:
    """REST calls to one server. Methods block; each raises :class:`ServerError` on failure."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30.0, infer_timeout: float = 600.0,
                 token: str | None = None, verify_tls: bool = True) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.token = token
        # verify_tls=False accepts a self-signed certificate (an in-house server); the traffic stays encrypted
        self._ssl = ssl.create_default_context() if verify_tls else ssl._create_unverified_context()

    # -- authentication ----------------------------------------------------------------------
    def auth_enabled(self) -> bool:
        """Whether the server checks bearer tokens (MONAI Label ``GET /auth/``; absent when authentication is off)."""
        try:
            return bool(self._json("GET", "/auth/", "Connecting").get("enabled"))
        except ServerError as exc:
            if exc.status == 404:
                return False
            raise

    def login(self, username: str, password: str) -> str:
        """Obtain a bearer token from ``POST /auth/token``; every later call sends it. Returns the token."""
        if not username or not password:
            raise ServerError("This server requires a login: enter your user name and password, then Connect")
        body = urllib.parse.urlencode({"username": username, "password": password, "grant_type": "password"})
        try:
            data = self._json("POST", "/auth/token", "Logging in",
                              raw=(body.encode(), "application/x-www-form-urlencoded"))
        except ServerError as exc:
            # MONAI Label relays the identity server's refusal as a bare HTTP 500 (raise_for_status)
            if exc.status is not None and exc.status in (400, 401, 403, 500):
                raise ServerError(f"Login refused for '{username}': wrong user name or password, or the account "
                                  "has no access to this server", exc.status) from None
            raise
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise ServerError("Logging in: the server answered without a token; is authentication set up there?")
        self.token = str(token)
        return self.token

    # -- transport ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, query: Mapping[str, Any] | None = None,
                 json_body: Any = None, fields: Mapping[str, str] | None = None,
                 files: Mapping[str, tuple[str, bytes]] | None = None,
                 timeout: float | None = None, raw: tuple[bytes, str] | None = None) -> tuple[int, Any, bytes]:
        """Send one request; returns ``(status, headers, body)`` for a 2xx answer."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data, headers = None, {"Accept": "application/json, multipart/form-data, */*"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if raw is not None:
            data, headers["Content-Type"] = raw
        elif fields is not None or files is not None:
            data, headers["Content-Type"] = encode_multipart(fields or {}, files or {})
        elif json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode("utf-8"), "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        wait = self.timeout if timeout is None else timeout
        try:
            with urllib.request.urlopen(request, timeout=wait, context=self._ssl) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp else b""
            raise self._http_error(what, exc.code, body) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerError(f"{what}: the server at {self.url} did not answer within {wait:.0f} s") from None
            why = getattr(reason, "strerror", None) or str(reason)
            raise ServerError(f"{what}: cannot reach the cineprop server at {self.url} ({why}). "
                              "Is it running (make run)? Is the address right?") from None
        except (socket.timeout, TimeoutError):
            raise ServerError(f"{what}: the server at {self.url} did not answer within {wait:.0f} s") from None
        except (ConnectionError, OSError) as exc:
            raise ServerError(f"{what}: the connection to {self.url} failed ({exc.__class__.__name__})") from None

    @staticmethod
    def _http_error(what: str, status: int, body: bytes) -> ServerError:
        detail = _detail(body)
        if status == 401:
            return ServerError(f"{what}: the server requires a login, or the login expired; enter your user name "
                               "and password and press Connect (HTTP 401)", status)
        if status == 403:
            return ServerError(f"{what}: your account may not do this on this server ({detail}) (HTTP 403)", status)
        if status >= 500 and detail.lower() in ("internal server error", ""):
            return ServerError(f"{what}: the server failed with an internal error (HTTP {status}); "
                               "the server log has the details", status)
        return ServerError(f"{what}: {detail} (HTTP {status})", status)

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        _, _, body = self._request(method, path, what, **kwargs)
        try:
            return json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError:
            raise ServerError(f"{what}: the server sent something that is not JSON") from None

    # -- app ---------------------------------------------------------------------------------
    def info(self) -> dict:
        """``GET /info/``: name, version, ``models`` (infer tasks), ``trainers``, ``strategies``."""
        return self._json("GET", "/info/", "Connecting")

    # -- datastore ---------------------------------------------------------------------------
    def studies(self) -> list[Study]:
        """Every image in the datastore, sorted by id."""
        data = self._json("GET", "/datastore/", "Listing studies", query={"output": "all"})
        objects = data.get("objects", {}) if isinstance(data, dict) else {}
        return [Study(k, tuple(sorted((v or {}).get("labels", {}))), dict((v or {}).get("image", {}).get("info", {})))
                for k, v in sorted(objects.items())]

    def download_image(self, image_id: str, folder: str | Path) -> Path:
        """Save a study's cine under ``folder`` (file name as the server names it)."""
        _, headers, body = self._request("GET", "/datastore/image", f"Downloading study {image_id}",
                                         query={"image": image_id}, timeout=self.infer_timeout)
        return self._save(folder, headers, body, f"{_safe_name(image_id)}.nii.gz")

    def download_label(self, image_id: str, tag: str, folder: str | Path) -> Path | None:
        """Save a study's label of ``tag`` under ``folder``; ``None`` when it has none."""
        try:
            _, headers, body = self._request("GET", "/datastore/label", f"Downloading the {tag} label of {image_id}",
                                             query={"label": image_id, "tag": tag})
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise
        return self._save(folder, headers, body, f"{_safe_name(image_id)}_{tag}.nii.gz")

    def upload_image(self, path: str | Path, image_id: str, params: Mapping | None = None) -> str:
        """Add a cine file to the datastore as ``image_id``; returns the id the server stored."""
        p = Path(path)
        data = self._json("PUT", "/datastore/image", f"Adding {image_id} to the datastore", query={"image": image_id},
                          fields={"params": json.dumps(dict(params or {}))}, files={"file": (p.name, p.read_bytes())},
                          timeout=self.infer_timeout)
        return str(data.get("image", image_id))

    def save_label(self, image_id: str, path: str | Path, tag: str = "final", params: Mapping | None = None) -> dict:
        """Store a label for ``image_id`` under ``tag`` (``final`` = approved, used for training)."""
        p = Path(path)
        return self._json("PUT", "/datastore/label", f"Submitting the label of {image_id}",
                          query={"image": image_id, "tag": tag}, fields={"params": json.dumps(dict(params or {}))},
                          files={"label": (p.name, p.read_bytes())}, timeout=self.infer_timeout)

    # -- sessions (cines that stay off the datastore) -----------------------------------------
    def create_session(self, path: str | Path) -> str:
        """Upload a cine for this session only; returns the ``session_id`` for :meth:`infer`."""
        p = Path(path)
        data = self._json("PUT", "/session/", "Uploading the cine", files={"files": (p.name, p.read_bytes())},
                          timeout=self.infer_timeout)
        return str(data["session_id"])

    def session_exists(self, session_id: str) -> bool:
        """Whether the server still holds the session (sessions expire)."""
        try:
            self._request("GET", f"/session/{urllib.parse.quote(session_id)}", "Checking the upload")
        except ServerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- tasks -------------------------------------------------------------------------------
    def infer(self, model: str, folder: str | Path, image_id: str | None = None, session_id: str | None = None,
              label: str | Path | None = None, params: Mapping | None = None) -> InferResponse:
        """Run infer task ``model`` on a datastore image or a session, with an optional support label file.

        The returned label file is saved under ``folder``.
        """
        if not image_id and not session_id:
            raise ServerError("Propagating: no study — load one from the server or choose a cine")
        files = {}
        if label is not None:
            lp = Path(label)
            files["label"] = (lp.name, lp.read_bytes())
        query = {"image": image_id or "", "session_id": session_id, "output": "all"}
        _, headers, body = self._request("POST", f"/infer/{urllib.parse.quote(model)}", "Propagating", query=query,
                                         fields={"params": json.dumps(dict(params or {}))}, files=files,
                                         timeout=self.infer_timeout)
        ctype = headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            parts, attached = decode_multipart(body, ctype)
            try:
                result = json.loads(parts.get("params", "{}"))
            except ValueError:
                raise ServerError("Propagating: the server's result description is not JSON") from None
            label_path = None
            if attached:
                filename, data = attached.get("image") or next(iter(attached.values()))
                label_path = Path(folder) / Path(filename).name
                label_path.parent.mkdir(parents=True, exist_ok=True)
                label_path.write_bytes(data)
            return InferResponse(label_path, result)
        try:
            return InferResponse(None, json.loads(body.decode("utf-8")))
        except ValueError:
            raise ServerError("Propagating: the server sent neither a label nor JSON") from None

    def train(self, model: str, params: Mapping | None = None, enqueue: bool = False) -> dict:
        """Start train task ``model`` in the background; returns the task record."""
        query = {"enqueue": "true"} if enqueue else None
        return self._json("POST", f"/train/{urllib.parse.quote(model)}", f"Starting {model}", query=query,
                          json_body=dict(params or {}))

    def train_status(self) -> dict | None:
        """The latest train task (``status``: RUNNING/DONE/ERROR, ``details``: last log lines); ``None`` if none ran."""
        try:
            return self._json("GET", "/train/", "Checking training")
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise

    def stop_training(self) -> dict:
        """Stop the running train task."""
        return self._json("DELETE", "/train/", "Stopping training")

    def next_study(self, strategy: str, params: Mapping | None = None) -> dict | None:
        """Ask active-learning ``strategy`` for the next study: ``{"id", "path", ...}``, or ``None`` when done."""
        data = self._json("POST", f"/activelearning/{urllib.parse.quote(strategy)}", "Choosing the next study",
                          json_body=dict(params or {}))
        return data if isinstance(data, dict) and data.get("id") else None

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _save(folder: str | Path, headers: Any, body: bytes, fallback: str) -> Path:
        disposition = headers.get("Content-Disposition", "") or ""
        match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", disposition)
        name = Path(urllib.parse.unquote(match.group(1))).name if match else fallback
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return path
