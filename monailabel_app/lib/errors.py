"""Turn user errors into HTTP answers with a message (MONAI Label turns any other exception into a bare 500).

====================================  ======  ==============================================
error                                 status  example
====================================  ======  ==============================================
``RequestError`` (bad parameter)      400     ``flag_threshold: 2 is outside [0, 1]``
unknown image id                      404     raised by the app (``main.py``) before the task
``InputError``/``SupportError``/...   422     ``label shape (…) differs from image shape (…)``
``CheckpointError``                   503     the configured checkpoint is missing or broken
====================================  ======  ==============================================
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Mapping

from fastapi import HTTPException

from cineprop.errors import CheckpointError, CinepropError
from lib.configs.settings import RequestError

logger = logging.getLogger(__name__)


def _clean(message: str, aliases: Mapping[str, str]) -> str:
    """Replace server-side temporary paths in a message with what the client knows them as."""
    for path, alias in aliases.items():
        if path:
            message = message.replace(path, alias)
    return message


@contextlib.contextmanager
def http_errors(aliases: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise user errors as :class:`fastapi.HTTPException` (see the module table).

    Args:
        aliases: ``{server path: name shown to the client}``, e.g. an upload's temporary file →
            ``"uploaded label"``.
    """
    aliases = dict(aliases or {})
    try:
        yield
    except HTTPException:
        raise
    except RequestError as exc:
        raise HTTPException(status_code=400, detail=_clean(str(exc), aliases)) from None
    except CheckpointError as exc:
        logger.error(f"cineprop: checkpoint problem: {exc}")
        raise HTTPException(status_code=503, detail=f"model unavailable: {_clean(str(exc), aliases)}") from None
    except CinepropError as exc:
        raise HTTPException(status_code=422, detail=_clean(str(exc), aliases)) from None
