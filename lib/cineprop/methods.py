"""The one builder every front end (CLI, MONAI Label app, Ray workers, tests) uses.

``build_propagator("flow")`` or ``build_propagator("model", checkpoint=..., device="cpu")``
returns an object with ``propagate(cine, support) -> Propagation``. Methods register themselves
here by name; heavy ones (torch models) are imported only when asked for.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from cineprop.errors import CinepropError
from cineprop.propagation import Propagator

# name -> "module:factory"; factories take keyword options (checkpoint, device, ...).
_REGISTRY: dict[str, str] = {
    "copy": "cineprop.baselines:CopyPropagator",
    "flow": "cineprop.baselines:FlowPropagator",
    "demons": "cineprop.baselines:DemonsPropagator",
    "model": "cineprop.engine:ModelPropagator",
}

_DESCRIPTIONS: dict[str, str] = {
    "copy": "repeat the nearest support frame's mask (baseline)",
    "flow": "warp the nearest support masks with dense optical flow (baseline)",
    "demons": "carry the nearest support masks with SimpleITK demons registration (peer baseline)",
    "model": "few-shot image model with confidence-gated memory (bundled checkpoint by default)",
}


def register(name: str, target: str, description: str) -> None:
    """Register a method factory given as ``"module:callable"``."""
    _REGISTRY[name] = target
    _DESCRIPTIONS[name] = description


def available() -> dict[str, str]:
    """Method names and one-line descriptions."""
    return dict(sorted(_DESCRIPTIONS.items()))


def build_propagator(name: str, **options: Any) -> Propagator:
    """Build the propagation method ``name`` with its options.

    Options a method does not take are ignored only if they are ``None`` (so front ends can pass
    ``checkpoint=None`` to every method); any other unknown option is an error.
    """
    if name not in _REGISTRY:
        raise CinepropError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    module_name, attr = _REGISTRY[name].split(":")
    factory: Callable[..., Propagator] = getattr(importlib.import_module(module_name), attr)
    options = {k: v for k, v in options.items() if v is not None}
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        raise CinepropError(f"method {name!r} does not take option(s) {', '.join(sorted(options))}") from None
    return factory(**options)
