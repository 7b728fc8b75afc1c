"""An OpenID realm on 127.0.0.1: the identity server's side of MONAI Label authentication, for tests.

MONAI Label (``MONAI_LABEL_AUTH_ENABLE=true``) fetches the realm's public key from
``MONAI_LABEL_AUTH_REALM_URI`` to check RS256 bearer tokens, and relays ``POST /auth/token`` to the
realm's password-grant token endpoint (found in its ``.well-known/openid-configuration``), as it
does with Keycloak. :class:`Realm` serves those three and signs tokens with a key of its own, so
tests can also mint tokens (:meth:`Realm.token`). Use::

    with Realm(users={"radiologist": ("secret", ["monailabel-user"])}) as realm:
        server = start_server(studies, env=realm.server_env(), headers=realm.bearer(["monailabel-user"]))
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Mapping
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PATH = "/realms/cineprop"


class Realm:
    """The realm's HTTP server; ``users`` maps a user name to ``(password, roles)`` for the token endpoint."""

    def __init__(self, users: Mapping[str, tuple[str, Iterable[str]]] | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.users = {name: (password, list(roles)) for name, (password, roles) in (users or {}).items()}
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.uri = f"http://127.0.0.1:{self._http.server_address[1]}{PATH}"

    def __enter__(self) -> "Realm":
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()

    def server_env(self) -> dict[str, str]:
        """The environment that turns MONAI Label's authentication on against this realm."""
        return {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": self.uri}

    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def token(self, roles: Iterable[str], username: str = "tester", expires_in: float = 3600) -> str:
        claims = {"preferred_username": username, "email": f"{username}@example.org", "name": username,
                  "realm_access": {"roles": list(roles)}, "exp": int(time.time() + expires_in)}
        return jwt.encode(claims, self.key, algorithm="RS256")

    def bearer(self, roles: Iterable[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(roles)}"}


def _handler(realm: Realm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path == PATH:
                self._answer(200, {"realm": "cineprop", "public_key": realm.public_key()})
            elif self.path == f"{PATH}/.well-known/openid-configuration":
                self._answer(200, {"token_endpoint": f"{realm.uri}/protocol/openid-connect/token"})
            else:
                self._answer(404, {})

        def do_POST(self):  # noqa: N802 - a password grant, as Keycloak answers it
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
            name, password = (form.get("username") or [""])[0], (form.get("password") or [""])[0]
            if self.path != f"{PATH}/protocol/openid-connect/token" or realm.users.get(name, ("",))[0] != password \
                    or not password:
                self._answer(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
                return
            self._answer(200, {"access_token": realm.token(realm.users[name][1], name), "token_type": "bearer"})

        def log_message(self, *args):
            pass

    return Handler
