"""The upload routes, replaced: checks off the event loop, within limits, and no file left behind.

MONAI Label 0.8.5's ``PUT /datastore/image``, ``PUT /datastore/label`` and ``PUT /session/`` copy
the upload to a temporary file and delete it in a background task, which never runs when the
endpoint raises (20 refused 100 MB uploads left 2,000 MiB in /tmp); they run the app's checks inside
the event loop (one hostile upload froze every endpoint for 20 minutes); ``GET /datastore/dataset``
writes a zip to the temporary folder and never removes it; and ``PUT /session/?uncompress=true``
unpacks a tar with no filter (members named ``../x`` are written anywhere). The routes here have the
same paths, parameters and roles, and

* copy the upload into a private temporary folder that is removed on every outcome (success,
  4xx, 5xx, client gone), and run copy and check in a worker thread, so other requests are answered;
* check uploads with the datastore's :meth:`~lib.datastore.CinepropDatastore.check_upload`
  (decompressed size, time and memory limits: ``--conf upload_max_mb/upload_seconds/upload_memory_mb``);
* refuse ``uncompress=true`` (a ``.zip`` of a DICOM series is accepted and unpacked safely by the
  check) and leave server paths out of session answers;
* send the dataset zip from a file already unlinked, so nothing stays on disk whatever happens.

``POST /activelearning/{strategy}`` and ``GET /datastore/image/info`` are MONAI Label's, run in a
worker thread, without the ``path`` (the study's absolute path on the server) they added: clients
download a study by id (``GET /datastore/image``).

:func:`install_upload_routes` puts them ahead of MONAI Label's (``lib.surface.put_first``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import anyio
from fastapi import Depends, FastAPI, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from lib.nonblocking import check_upload_names, json_object
from lib.datastore import CinepropDatastore, refuse
from lib.surface import put_first

#: Suffixes kept on an upload's temporary copy (readers choose by suffix); longest first.
KEPT_SUFFIXES = (".seg.nrrd",)
#: Session answers leave these out: they are server paths.
PRIVATE_SESSION_KEYS = ("path", "image")


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A private temporary folder, removed on exit whatever happened."""
    folder = Path(tempfile.mkdtemp(prefix="cineprop-upload-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def receive(upload: UploadFile, folder: Path, stem: str = "upload") -> str:
    """Copy ``upload`` to ``folder/<stem><suffix>``, keeping only a recognised suffix of its name."""
    from cineprop.io import INPUT_SUFFIXES

    check_upload_names(upload)
    name = (upload.filename or "").lower()
    suffix = next((s for s in sorted(KEPT_SUFFIXES + INPUT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")
    path = folder / f"{stem}{suffix}"
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return str(path)


async def in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a worker thread; if the request is cancelled, wait for it (its cleanup) first."""
    return await anyio.to_thread.run_sync(work)


def _stem(filename: str | None) -> str:
    from cineprop.io import stem

    return stem(os.path.basename(filename or "")) if filename else ""


# ----------------------------------------------------------------------------------------- datastore
async def add_image(image: Optional[str] = None, params: str = Form("{}"), file: UploadFile = File(...),
                    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    def work():
        info = json_object(params)
        if user.username:
            info["user"] = user.username
        with scratch() as folder:
            path = receive(file, folder)
            return {"image": app_instance().datastore().add_image(image or _stem(file.filename), path, info)}

    return await in_thread(work)


async def save_label(image: str, params: str = Form("{}"), tag: str = "final", label: UploadFile = File(...),
                     user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    def work():
        info = json_object(params)
        instance = app_instance()
        with scratch() as folder:
            label_id = instance.datastore().save_label(image, receive(label, folder), tag or "final", info)
        result = instance.on_save_label(image, label_id) or {}
        return {**result, "image": image, "label": label_id}

    return await in_thread(work)


async def download_dataset(limit_cases: Optional[int] = None,
                           user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    def work():
        try:
            path = app_instance().datastore().get_dataset_archive(limit_cases)
        except AssertionError as exc:  # MONAI Label asserts when no study has a final label
            raise refuse(404, f"no dataset to download: {exc}") from None
        stream = open(path, "rb")
        os.unlink(path)  # the open file keeps the data until the download ends or fails
        return stream

    stream = await in_thread(work)

    def chunks():
        with stream:
            while block := stream.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/zip",
                             headers={"Content-Disposition": 'attachment; filename="dataset.zip"'})


# ------------------------------------------------------------------------------------------ sessions
def _sessions():
    sessions = app_instance().sessions()
    if sessions is None:
        raise refuse(406, "sessions are not enabled on this server")
    return sessions


def public_session(info) -> dict:
    return {k: v for k, v in info.to_json().items() if k not in PRIVATE_SESSION_KEYS}


def _receive_all(files: List[UploadFile], folder: Path) -> str:
    """One file → its copy; several (a DICOM series, frames) → a folder of them under their own names."""
    if len(files) == 1:
        return receive(files[0], folder)
    series = folder / "series"
    series.mkdir()
    for i, upload in enumerate(files):
        name = _stem(upload.filename) or f"file{i:05d}"
        if (series / name).exists() or name.startswith("."):
            name = f"file{i:05d}"
        receive(upload, series, name)
    return str(series)


async def create_session(uncompress: bool = False, expiry: int = 0, files: List[UploadFile] = File(...),
                         user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    if uncompress:
        raise refuse(400, "uncompress=true is not supported: upload the cine file itself, or a .zip of a DICOM "
                          "series or frame folder, which the server unpacks with its own checks")

    def work():
        sessions = _sessions()
        store = app_instance().datastore()
        with scratch() as folder:
            path = _receive_all(files, folder)
            stored = path
            if isinstance(store, CinepropDatastore):
                stored, _ = store.check_upload(path, "session")
            try:
                session_id, info = sessions.add_session(stored, max(int(expiry), 0), False)
            finally:
                if stored != path:  # converted into a staging folder of its own
                    shutil.rmtree(Path(stored).parent, ignore_errors=True)
        return {"session_id": session_id, "session_info": public_session(info)}

    return await in_thread(work)


async def get_session(session_id: str, update_ts: bool = False, image: bool = False,
                      user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    from fastapi.responses import FileResponse

    info = _sessions().get_session(session_id, update_ts=update_ts)
    if not info:
        raise refuse(404, f"session {session_id[:80]!r} not found")
    if image:
        return FileResponse(info.image, filename=os.path.basename(info.image))
    return public_session(info)


# ------------------------------------------------------------------------ answers without server paths
async def next_sample(strategy: str, params: Optional[dict] = None,
                      user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    from monailabel.endpoints.activelearning import sample

    result = await in_thread(lambda: sample(strategy, params, user.username))
    return {k: v for k, v in result.items() if k != "path"}


async def image_info(image: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    info = app_instance().datastore().get_image_info(image)
    return {k: v for k, v in info.items() if k != "path"}


def install_upload_routes(app: FastAPI, prefix: str) -> None:
    """Put the routes of this module ahead of MONAI Label's (same paths, methods and roles)."""
    routes = [("/datastore/image", add_image, "PUT"), ("/datastore/", add_image, "PUT"),
              ("/datastore/label", save_label, "PUT"), ("/datastore/dataset", download_dataset, "GET"),
              ("/session/", create_session, "PUT"), ("/session/{session_id}", get_session, "GET"),
              ("/activelearning/{strategy}", next_sample, "POST"), ("/datastore/image/info", image_info, "GET")]
    for path, endpoint, method in routes:
        # Left out of the OpenAPI schema: MONAI Label's entry documents the same interface.
        put_first(app, prefix + path, endpoint, [method], name=f"cineprop_{endpoint.__name__}",
                  include_in_schema=False)
