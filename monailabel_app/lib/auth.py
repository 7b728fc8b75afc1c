"""Make MONAI Label's token check work with PyJWT 2 (only when authentication is enabled).

MONAI Label 0.8.5 validates bearer tokens with ``jwt.decode(token, key, options=...)``
(``monailabel/endpoints/user/auth.py``, ``from_token``) and passes no ``algorithms``. PyJWT 2.x
requires that argument, so with ``MONAI_LABEL_AUTH_ENABLE=true`` *every* token, valid or not, is
refused with 401 ("It is required that you pass in a value for the "algorithms" argument"): the
server is safe but nobody can use it. :func:`accept_signed_tokens` replaces ``from_token`` with the
same function that names the accepted algorithms: public-key signatures only, so a token signed
with the realm's *public* key as an HMAC secret can never pass.

Everything else stays MONAI Label's: where the key comes from (the realm's ``public_key``), the
claims read (username, email, name, roles), expiry checking, and the roles each endpoint needs.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: Signature algorithms accepted on bearer tokens (Keycloak signs with RS256 by default).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


def _from_token(token: str):
    import jwt
    from monailabel.config import settings
    from monailabel.endpoints.user import auth

    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    payload = jwt.decode(token, key, algorithms=list(ALGORITHMS),
                         options={"verify_signature": True, "verify_aud": False, "verify_exp": True})
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):  # e.g. realm_access#roles
        roles = roles.get(part) if isinstance(roles, dict) else None
    username = payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or payload.get("sub") or ""
    return auth.User(username=str(username),
                     email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
                     name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                     roles=list(roles) if isinstance(roles, (list, tuple)) else [])


def accept_signed_tokens() -> bool:
    """Install the fixed token check when authentication is on; returns whether it did."""
    from monailabel.config import settings
    from monailabel.endpoints.user import auth

    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return False
    auth.from_token = _from_token  # get_current_user looks the name up at each call
    logger.info(f"cineprop: bearer tokens are checked with algorithms {', '.join(ALGORITHMS)}")
    return True
