"""Serve ``POST /infer/{model}`` from worker threads so the server keeps answering meanwhile.

MONAI Label 0.8.5 declares its endpoints ``async def`` and calls the inference synchronously inside
them (monailabel/endpoints/infer.py), so the event loop, and with it every other request
(``/info``, ``/datastore``, a second user's "next sample"), waits for the whole inference. This
module swaps that one route for an identical one (same path, parameters, auth dependency and
OpenAPI entry) whose body runs MONAI Label's own ``run_inference`` in a thread, at most
``threads`` at a time; everything else stays MONAI Label's. Enabled by ``--conf infer_threads N``
(default 1; 0 keeps MONAI Label's blocking route).
"""

from __future__ import annotations

import functools
import logging

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute

logger = logging.getLogger(__name__)


def _threaded(threads: int):
    from monailabel.endpoints import infer as infer_endpoint

    endpoint = infer_endpoint.api_run_inference
    limiter: list = []

    @functools.wraps(endpoint)  # FastAPI reads the original signature (form fields, files, auth) through this
    async def threaded_infer(**kwargs):
        kwargs.pop("user", None)  # checked by the RBAC dependency; run_inference does not take it
        if not limiter:  # created on first use, inside the event loop
            limiter.append(anyio.CapacityLimiter(threads))
        call = functools.partial(infer_endpoint.run_inference, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=limiter[0])

    return threaded_infer


def offload_infer_route(app: FastAPI, threads: int, path: str = "/infer/{model}") -> None:
    """Put a threaded ``POST path`` route first in ``app``'s routes, ahead of MONAI Label's own.

    Only public FastAPI API is used (``add_api_route``); the original route stays in place (and in
    the OpenAPI docs) but is no longer reached, since the router takes the first full match.
    """
    app.router.add_api_route(path, _threaded(threads), methods=["POST"], include_in_schema=False,
                             name="cineprop_threaded_infer")
    route = app.router.routes.pop()
    assert isinstance(route, APIRoute) and route.path == path
    app.router.routes.insert(0, route)
    logger.info(f"cineprop: POST {path} runs in up to {threads} worker thread(s); the server stays responsive")
