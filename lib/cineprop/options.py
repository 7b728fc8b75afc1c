"""Where strings become typed settings, and the only place: the core's twin of the app's ``configs/settings.py``.

Method options arrive as strings (``--option flow_weight=0``, ``--steps 30``, the app's ``--conf``)
or as Python values (tests, scripts). :func:`replace_from_strings` applies a mapping of them to a
frozen settings dataclass (:class:`~cineprop.session.SessionConfig`, ``RelearnConfig``, a method's
options in :mod:`cineprop.methods`), converting each value to its field's type by one rule
(:func:`convert`). A dataclass-valued field (a method's ``session``) is set through its own fields'
names, so a method's options form one flat namespace: ``flow_weight``, ``steps``, ``checkpoint``.
Unknown names and unusable values raise :class:`~cineprop.errors.CinepropError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping, TypeVar

from cineprop.errors import CinepropError

T = TypeVar("T")

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def convert(value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` (``bool``, ``int``, ``float``, ``str``, ``tuple[str, ...]`` or ``X | None``).

    Strings are parsed: booleans from ``true/false, 1/0, yes/no, on/off`` (any case), tuples from
    ``"a,b"``. Refused (``ValueError``): a fractional int, a NaN float, anything else unparsable.
    """
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(v).strip() for v in items if str(v).strip())
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise ValueError(value)
        return text in _TRUE
    if kind is int:
        number = float(value.strip() if isinstance(value, str) else value)
        if isinstance(value, bool) or number != int(number):
            raise ValueError(value)
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if math.isnan(number):
            raise ValueError(value)
        return number
    if kind is str:
        return str(value).strip()
    raise TypeError(f"no conversion to {kind!r}")


def _kind_name(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        return "comma-separated names"
    return getattr(kind, "__name__", str(kind))


def option_names(config: Any) -> dict[str, str]:
    """Every name :func:`replace_from_strings` accepts for the dataclass ``config`` → the field it sets.

    A dataclass-valued field contributes its own fields' names (owner: that field); others their own name.
    """
    out: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        for inner in dataclasses.fields(value) if dataclasses.is_dataclass(value) else [f]:
            if inner.name in out:
                raise TypeError(f"option name {inner.name!r} is ambiguous in {type(config).__name__}")
            out[inner.name] = f.name
    return out


def replace_from_strings(config: T, changes: Mapping[str, Any], what: str) -> T:
    """A copy of the frozen dataclass ``config`` with ``changes`` (by name, see :func:`option_names`) applied.

    Args:
        changes: ``{name: value}``; string values are converted to the field's type (:func:`convert`).
        what: how errors name these options (``"session"``, ``"relearn"``, a method name).

    Raises:
        CinepropError: an unknown name (the message lists the known ones) or a value that does not
            convert (the message names the key and the expected type).
    """
    owners = option_names(config)
    unknown = sorted(set(changes) - set(owners))
    if unknown:
        raise CinepropError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(owners))}")
    hints = typing.get_type_hints(type(config))
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        owner = owners[name]
        if owner != name:
            nested.setdefault(owner, {})[name] = value
            continue
        try:
            direct[name] = convert(value, hints[name])
        except (TypeError, ValueError, OverflowError):
            raise CinepropError(f"{what} option {name}={value!r}: expected {_kind_name(hints[name])}") from None
    for owner, values in nested.items():
        direct[owner] = replace_from_strings(getattr(config, owner), values, what)
    return dataclasses.replace(config, **direct)  # type: ignore[type-var]
