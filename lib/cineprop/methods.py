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
    "interpolate": "cineprop.interpolation:InterpolatePropagator",
    "flow": "cineprop.baselines:FlowPropagator",
    "dis": "cineprop.baselines:DisPropagator",
    "demons": "cineprop.baselines:DemonsPropagator",
    "syn": "cineprop.baselines:SynPropagator",
    "elastix": "cineprop.baselines:ElastixPropagator",
    "model": "cineprop.methods:learned_propagator",
    "relearn": "cineprop.relearn.propagator:RelearnPropagator",
}

_DESCRIPTIONS: dict[str, str] = {
    "copy": "repeat the nearest support frame's mask (baseline)",
    "interpolate": "linear shape interpolation between painted frames, nearest painting outside them (baseline)",
    "flow": "warp the nearest support masks with dense optical flow (baseline)",
    "dis": "as flow, with OpenCV DIS optical flow (peer baseline)",
    "demons": "carry the nearest support masks with SimpleITK demons registration (peer baseline)",
    "syn": "as demons, with ANTs SyN registration (peer baseline; optional extra 'peers')",
    "elastix": "as demons, with elastix B-spline registration (peer baseline; optional extra 'elastix')",
    "model": "few-shot image model with confidence-gated memory (bundled checkpoint by default)",
    "relearn": "per-cine test-time spatiotemporal consistency relearning of the image model, then two-stage "
               "inference (options: --steps, --option KEY=VALUE)",
}


#: ``--method model``'s propagator by checkpoint kind (the kind also chose the model class it loads)
_LEARNED_BY_KIND: dict[str, str] = {
    "image": "cineprop.engine:ModelPropagator",
    "relearn": "cineprop.relearn.propagator:TwoStagePropagator",
}


def learned_propagator(checkpoint: str | None = None, device: str = "cpu", memory: bool = True,
                       flag_threshold: float | None = None, config: Any = None,
                       options: dict | None = None) -> Propagator:
    """``--method model``: load the checkpoint once; its kind picks the propagator.

    An ``image`` checkpoint propagates with sessions (:class:`~cineprop.engine.ModelPropagator`),
    a ``relearn`` one with the video model's two-stage inference
    (:class:`~cineprop.relearn.propagator.TwoStagePropagator`).

    Args:
        checkpoint: a ``.pt`` written by ``cineprop train-image``/``relearn``; default the bundled one.
        device: torch device string.
        memory: feed confident predictions back as memory (see :class:`~cineprop.session.SessionConfig`).
        flag_threshold: confidence below which frames are flagged.
        config: a :class:`~cineprop.session.SessionConfig` to start from.
        options: its fields by name (strings are converted), e.g. ``{"memory_threshold": "0"}``
            from ``--option memory_threshold=0``.
    """
    from dataclasses import replace

    from cineprop.checkpoints import load_model
    from cineprop.session import SessionConfig
    from cineprop.threads import configure_threads

    configure_threads(device)
    model, payload = load_model(checkpoint, device)
    session_config = replace(config or SessionConfig(), memory=memory).with_options(dict(options or {}))
    if flag_threshold is not None:
        session_config = replace(session_config, flag_threshold=float(flag_threshold))
    return _load(_LEARNED_BY_KIND[payload.get("kind", "image")])(model, payload, device, session_config)


def _session_option_names() -> list[str]:
    """Names ``--option`` may set for ``model``: the :class:`~cineprop.session.SessionConfig` fields."""
    from cineprop.session import SessionConfig

    return list(SessionConfig.__dataclass_fields__)


learned_propagator.option_names = _session_option_names  # type: ignore[attr-defined]


def _load(target: str) -> Callable[..., Any]:
    """The callable named ``"module:attr"`` (imported on first use)."""
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


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
    factory: Callable[..., Propagator] = _load(_REGISTRY[name])
    options = {k: v for k, v in options.items() if v is not None}
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        raise CinepropError(f"method {name!r} does not take option(s) {', '.join(sorted(options))}") from None
    return factory(**options)


def supported_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The part of ``options`` method ``name`` takes (for one command line running several methods).

    Keyword options the factory does not take are dropped; of an ``options`` dict (``--option``),
    only the keys the factory lists in its ``option_names()`` are kept.
    """
    if name not in _REGISTRY:
        raise CinepropError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    factory = _load(_REGISTRY[name])
    params = inspect.signature(factory).parameters
    out = {k: v for k, v in options.items() if k in params}
    if out.get("options"):
        names = set(factory.option_names()) if hasattr(factory, "option_names") else set()
        out["options"] = {k: v for k, v in out["options"].items() if k in names} or None
    return out


def options(name: str) -> frozenset[str] | None:
    """Keyword options method ``name`` takes (``checkpoint``, ``device``, ``steps``, ...).

    ``None`` means any option (the factory takes ``**kwargs``). Front ends use it to pass only the
    options a method understands, e.g. a configured checkpoint path to ``model`` but not to ``flow``.
    """
    if name not in _REGISTRY:
        raise CinepropError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    parameters = inspect.signature(_load(_REGISTRY[name])).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters
                     if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
