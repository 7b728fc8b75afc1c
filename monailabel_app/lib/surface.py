"""What the server answers: only the routes the app uses, and only to callers it should answer.

MONAI Label 0.8.5 mounts every router it has whatever the app needs, with ``Allow Origins: ['*']``
(``monailabel/app.py``). The routers are included at import time, before the app exists, and
FastAPI 0.165 keeps included routers as they are, so from ``on_init_complete`` the app puts its own
routes first (the router takes the first full match; public ``add_api_route`` only): a refusing
route (404 with the reason, left out of ``/openapi.json``) or a replacement; and it rebuilds the
middleware stack with its own origin rules. What changes and why:

==========================================  ===================================================
MONAI Label route                           here
==========================================  ===================================================
``POST /infer/wsi/{m}``, ``/infer/wsi_v2``  refused: ``image`` and ``params.label`` are server
                                            paths there (read any file; errors tell whether a
                                            path exists); cines are not whole-slide images
``PUT /session/``, ``GET /session/{id}``    replaced (``lib/uploads.py``): ``uncompress=true``
                                            unpacked tars with no filter (``../`` members wrote
                                            anywhere); now refused, uploads checked within limits,
                                            no server paths in answers
``PUT /datastore/image``, ``/label``,       replaced (``lib/uploads.py``): checks off the event
``GET /datastore/dataset``                  loop, within limits; temp files removed on every outcome
``POST /activelearning/{s}``,               replaced (``lib/uploads.py``): the same answer without
``GET /datastore/image/info``               the study's server path
``PUT``/``DELETE /model/{m}``               refused: an annotator could replace the served model;
                                            models come from training (``model/cineprop.pt``)
``POST /reload``                            refused: no role checked, and each call built a new
                                            app without stopping the old one (threads leak)
``/logs/``, ``/logs/gpu``                   refused: the whole log (server paths, other servers'
                                            lines) to anyone with authentication off
``/ohif/``, ``/proxy/`` (local studies)     refused: no OHIF bundle or DICOMweb server to serve
``/``, ``/docs``, ``/openapi.json``         refused when authentication is on (they need no token)
==========================================  ===================================================

Kept as MONAI Label has them (they take ids, never paths): ``/info``, ``/infer/{m}`` (threaded,
``lib/nonblocking.py``), the rest of ``/datastore``, ``/activelearning``, ``/scoring``, ``/train``,
``/batch``, ``GET /model/{m}``, ``/model/info/{m}``, ``DELETE /session/{id}``, ``/auth``.

Cross-origin requests (:class:`OriginGuard`): a browser sends ``Origin`` with every cross-site
``POST``/``PUT``/``DELETE`` and ``Sec-Fetch-Site`` with every request. A request from a web page whose
origin is not in ``--conf cors_origins`` is answered 403 before any route runs (a CORS header alone
would not stop a "simple" form POST from running), and CORS preflights are granted to those origins
only. Pages the server serves itself (its ``/docs``) count as its own origin only on a loopback or
IP-literal host, so a DNS-rebinding page (its own host name pointing to 127.0.0.1) stays foreign.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

logger = logging.getLogger(__name__)

ALL = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
#: ``(path, methods, why)`` this app does not serve (paths without MONAI_LABEL_API_STR).
BLOCKED = (
    ("/infer/wsi/{model}", ALL, "whole-slide inference takes server paths; cines are inferred at /infer/{model}"),
    ("/infer/wsi_v2/{model}", ALL, "whole-slide inference takes server paths; cines are inferred at /infer/{model}"),
    ("/model/{model}", ("PUT", "DELETE"), "the served model comes from training (model/cineprop.pt) or --conf "
                                          "checkpoint, never from an upload"),
    ("/reload", ALL, "restart the server to reload the app"),
    ("/logs/{path:path}", ALL, "the log stays on the server"),
    ("/logs", ALL, "the log stays on the server"),
    ("/ohif/{path:path}", ALL, "this app bundles no OHIF viewer"),
)
#: Blocked when the studies folder is local (the proxy only forwards to a DICOMweb datastore).
BLOCKED_LOCAL = (("/proxy/{path:path}", ALL, "there is no DICOMweb server behind this datastore"),)
#: Blocked when authentication is on: MONAI Label serves them without a token.
BLOCKED_AUTH = tuple((p, ("GET", "HEAD"), "API documentation is off while authentication is on")
                     for p in ("/", "/docs", "/openapi.json"))


def put_first(app: FastAPI, path: str, endpoint: Callable, methods: Sequence[str], name: str,
              include_in_schema: bool = True) -> None:
    """Add ``endpoint`` at ``path`` ahead of every existing route (the router takes the first full match)."""
    app.router.add_api_route(path, endpoint, methods=list(methods), name=name, include_in_schema=include_in_schema)
    route = app.router.routes.pop()
    app.router.routes.insert(0, route)


def _refusal(why: str) -> Callable:
    async def not_served():
        raise HTTPException(status_code=404, detail=f"not served by the cineprop app: {why}")

    return not_served


def block_routes(app: FastAPI, prefix: str, local_studies: bool, auth: bool) -> list[str]:
    """Answer 404 (with the reason) on the routes of the module table; returns ``"path"`` of each one.

    FastAPI keeps included routers as they are, so the app does not remove MONAI Label's routes: it
    puts a refusing route with the same path first, and leaves the path out of the OpenAPI schema.
    """
    rules = BLOCKED + (BLOCKED_LOCAL if local_studies else ()) + (BLOCKED_AUTH if auth else ())
    for path, methods, why in rules:
        put_first(app, prefix + path, _refusal(why), methods, name=f"cineprop_blocked_{path}", include_in_schema=False)
    paths = {prefix + path for path, _, _ in rules}
    schema = app.openapi

    def openapi() -> dict:
        document = schema()
        for path in list(document.get("paths", {})):
            if path in paths or any(path.startswith(prefix + p.split("{")[0]) for p, _, _ in rules if "{path:path}" in p):
                document["paths"].pop(path)
        return document

    app.openapi = openapi
    return sorted(paths)


def _is_loopback_or_ip(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class OriginGuard:
    """ASGI middleware: 403 for browser requests from origins other than ``allowed`` (module docstring)."""

    def __init__(self, app, allowed: Iterable[str] = ()):
        self.app = app
        self.allowed = frozenset(allowed)

    def _foreign(self, scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin is None:
            return "a cross-site page" if headers.get("sec-fetch-site") == "cross-site" else None
        origin = origin.strip().lower()
        if origin in self.allowed:
            return None
        host = headers.get("host", "")
        own = f"{scope.get('scheme', 'http')}://{host}".lower()
        if origin == own and _is_loopback_or_ip(urlsplit(own).hostname or ""):
            return None
        return origin

    async def __call__(self, scope, receive, send):
        foreign = self._foreign(scope) if scope["type"] == "http" else None  # the app has no websocket routes
        if foreign is None:
            return await self.app(scope, receive, send)
        body = json.dumps({"detail": f"request from the web page origin {foreign[:100]!r} refused: this server "
                                     "answers only origins listed in --conf cors_origins"}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def restrict_origins(app: FastAPI, origins: Sequence[str]) -> None:
    """Replace MONAI Label's CORS middleware (``*``) by :class:`OriginGuard` + CORS for ``origins`` only."""
    cors = Middleware(CORSMiddleware, allow_origins=list(origins), allow_credentials=True, allow_methods=["*"],
                      allow_headers=["*"])
    kept = [m for m in app.user_middleware if m.cls is not CORSMiddleware]
    app.user_middleware[:] = [Middleware(OriginGuard, allowed=origins), cors, *kept]
    app.middleware_stack = app.build_middleware_stack()  # built at the first event (lifespan): build it again
    logger.info(f"cineprop: web pages may call this server from: {', '.join(origins) or 'no other origin'}")
