"""Serve ``POST /infer/{model}`` from worker threads so the server keeps answering meanwhile.

MONAI Label 0.8.5 declares its endpoints ``async def`` and calls the inference synchronously inside
them (monailabel/endpoints/infer.py), so the event loop, and with it every other request
(``/info``, ``/datastore``, a second user's "next sample"), waits for the whole inference. This
module swaps that one route for an identical one (same path, parameters, auth dependency and
OpenAPI entry) whose body runs MONAI Label's own ``run_inference`` in a thread, at most
``threads`` at a time; everything else stays MONAI Label's. ``--conf infer_threads N`` (default 1;
0 runs it in the event loop, as MONAI Label does). Before running it, the route refuses with a 400 an
``image`` that is a path rather than a datastore id and ``params`` that set the request's own keys
(:func:`check_request`).
"""

from __future__ import annotations

import functools
import json
import logging

import anyio
from fastapi import FastAPI

logger = logging.getLogger(__name__)


#: Request keys the server fills in itself; ``params`` may not set them (MONAI Label merges ``params``
#: over the request, so ``{"image": "/any/server/file"}`` would otherwise read any file the server can).
RESERVED_PARAMS = ("image", "label", "session", "model", "file")


def json_object(text: str, what: str = "params") -> dict:
    """A form field holding a JSON object (empty: ``{}``); anything else is refused with a 400."""
    from lib.datastore import refuse

    try:
        value = json.loads(text) if text else {}
    except ValueError as exc:
        raise refuse(400, f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise refuse(400, f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def check_request(image: str, params: str) -> None:
    """Refuse (400) an ``image`` query that is a path and ``params`` that are not a JSON object or set reserved keys.

    The image is a datastore id; an image to infer on without storing it is uploaded as ``file``.
    """
    from lib.datastore import check_name, refuse

    if image:
        check_name(image, "image")
    decoded = json_object(params, "params")
    reserved = sorted(set(decoded) & set(RESERVED_PARAMS))
    if reserved:
        raise refuse(400, f"params: {', '.join(reserved)} cannot be set in params; send the image id as ?image=, "
                          "an image file as 'file' and the painted label as 'label'")


def check_upload_names(*uploads) -> None:
    """Refuse (400) an uploaded image or label whose file name is not a volume file name.

    MONAI Label names its temporary copy with the upload's suffixes (a NUL or a 300-byte suffix
    made that fail with a bare 500) and converts a ``.bin`` label as OHIF scribbles.
    """
    from cineprop.io import INPUT_SUFFIXES
    from lib.datastore import refuse

    for upload in uploads:
        name = getattr(upload, "filename", None)
        if upload is None or not name:
            continue
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        suffix_ok = "." not in base or base.lower().endswith(INPUT_SUFFIXES)  # no suffix: DICOM, read by content
        if len(name.encode("utf-8", "surrogatepass")) > 255 or any(ord(c) < 32 for c in name) or not suffix_ok:
            raise refuse(400, f"uploaded file name {name[:80]!r}: expected a name ending with one of "
                              f"{', '.join(INPUT_SUFFIXES)} (or a DICOM file name without a suffix)")


def _threaded(threads: int):
    from monailabel.endpoints import infer as infer_endpoint

    endpoint = infer_endpoint.api_run_inference
    limiter: list = []

    @functools.wraps(endpoint)  # FastAPI reads the original signature (form fields, files, auth) through this
    async def threaded_infer(**kwargs):
        kwargs.pop("user", None)  # checked by the RBAC dependency; run_inference does not take it
        check_request(kwargs.get("image") or "", kwargs.get("params") or "")
        check_upload_names(kwargs.get("file"), kwargs.get("label"))
        call = functools.partial(infer_endpoint.run_inference, **kwargs)
        try:
            if threads <= 0:
                return call()  # MONAI Label's behaviour: the event loop waits for the inference
            if not limiter:  # created on first use, inside the event loop
                limiter.append(anyio.CapacityLimiter(threads))
            return await anyio.to_thread.run_sync(call, limiter=limiter[0])
        except BaseException:
            # MONAI Label removes the uploads' temporary copies in background tasks, which never
            # run when the endpoint raises: run them now, so a refused request leaves nothing behind.
            await kwargs["background_tasks"]()
            raise

    return threaded_infer


def offload_infer_route(app: FastAPI, threads: int, path: str = "/infer/{model}") -> None:
    """Put a threaded ``POST path`` route first in ``app``'s routes, ahead of MONAI Label's own.

    Only public FastAPI API is used (``add_api_route``); the original route stays in place (and in
    the OpenAPI docs) but is no longer reached, since the router takes the first full match.
    """
    from lib.surface import put_first

    put_first(app, path, _threaded(threads), ["POST"], name="cineprop_threaded_infer", include_in_schema=False)
    if threads > 0:
        logger.info(f"cineprop: POST {path} runs in up to {threads} worker thread(s); the server stays responsive")
    else:
        logger.info(f"cineprop: POST {path} runs in the event loop (infer_threads 0): other requests wait")
