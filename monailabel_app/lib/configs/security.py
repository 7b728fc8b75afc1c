"""The server's security settings: which web origins may call it and how far one upload may go.

Parsed once from ``--conf`` (the keys are documented in :data:`lib.configs.settings.CONF_KEYS`);
``lib/surface.py`` and the datastore read the result. Bad values stop the server with a
:class:`~lib.configs.settings.SettingsError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from cineprop.io.limited import Limits
from lib.configs.settings import SettingsError, parse_float, parse_names

#: Upload limits when ``--conf`` sets none (see :class:`cineprop.io.limited.Limits`).
DEFAULT_LIMITS = Limits()


def _origin(value: str) -> str:
    """``scheme://host[:port]`` exactly as a browser sends it in ``Origin``; refuses anything else."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise SettingsError(f"--conf cors_origins: {value!r} is not an origin like http://127.0.0.1:3000 "
                            "('*' is not accepted: it would let every web page call the server)")
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class SecuritySettings:
    """Attributes:
        cors_origins: web origins (``scheme://host:port``) whose pages may call the server; empty: none.
        limits: bounds on checking one upload (decompressed MiB, seconds, MiB of memory).
    """

    cors_origins: tuple[str, ...] = ()
    limits: Limits = DEFAULT_LIMITS

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None, monai_label_origins: Sequence[str] = ()) -> "SecuritySettings":
        """Parse ``--conf``; ``monai_label_origins`` is MONAI Label's ``MONAI_LABEL_CORS_ORIGINS``, used
        when ``cors_origins`` is not given (MONAI Label reads an empty list as ``*``; here it means none)."""
        conf = dict(conf or {})
        raw = conf.get("cors_origins")
        names = parse_names(raw, "--conf cors_origins", SettingsError) if raw is not None else \
            tuple(str(o) for o in monai_label_origins)
        if "*" in names:
            raise SettingsError("--conf cors_origins / MONAI_LABEL_CORS_ORIGINS: '*' is not accepted (every web page "
                                "could call the server); list the origins, e.g. http://127.0.0.1:3000")
        origins = tuple(dict.fromkeys(_origin(n) for n in names))

        def limit(key: str, default: float | None) -> float | None:
            value = conf.get(key)
            if value is None or not str(value).strip():
                return default
            number = parse_float(value, f"--conf {key}", 0, 1e7, SettingsError)
            return number or None  # 0 turns the limit off

        limits = Limits(max_mb=limit("upload_max_mb", DEFAULT_LIMITS.max_mb),
                        seconds=limit("upload_seconds", DEFAULT_LIMITS.seconds),
                        memory_mb=limit("upload_memory_mb", DEFAULT_LIMITS.memory_mb))
        return cls(origins, limits)
