"""User-facing errors.

Every problem a user can cause (a missing file, a label of the wrong shape, an empty support) is
raised as a :class:`CinepropError` subclass whose message is one line naming the file or the
argument and what is wrong. Front ends (the CLI, the MONAI Label app, the Slicer client) turn these
into a one-line message or an HTTP 4xx; anything else is a bug.
"""

from __future__ import annotations


class CinepropError(Exception):
    """Base class of every error caused by the user's input or request."""


class InputError(CinepropError, ValueError):
    """An input file or array is unreadable or not a valid cine / label volume."""


class SupportError(CinepropError, ValueError):
    """The support (the painted frames) is missing, empty or inconsistent with the cine."""


class CheckpointError(CinepropError, ValueError):
    """A model checkpoint is missing, corrupt or does not match the model."""


def where(path: object | None, message: str) -> str:
    """Format ``"PATH: message"`` (or just ``message`` when there is no path)."""
    return f"{path}: {message}" if path else message
