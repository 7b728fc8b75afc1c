"""The one builder every front end (CLI, MONAI Label app, Ray workers, tests) uses.

Each method is registered by name with its factory and its options dataclass (both imported only
when asked for, so ``--help`` never loads torch). A front end builds the options object once —
:func:`method_options` turns settings by name (``--checkpoint``, ``--steps``, ``--option KEY=VALUE``,
the app's ``--conf``; strings are converted by :mod:`cineprop.options`) into the method's dataclass —
and :func:`build_propagator` calls the factory with that object's fields as keywords::

    build_propagator("model", method_options("model", {"checkpoint": "m.pt", "flow_weight": "0"}))
    build_propagator("model", checkpoint="m.pt", options={"flow_weight": "0"})   # the same, in one call

The result has ``propagate(cine, support) -> Propagation``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from cineprop.errors import CinepropError
from cineprop.options import option_names, replace_from_strings
from cineprop.propagation import Propagator
from cineprop.session_config import REFINE_BELOW, REFINE_STEP, SessionConfig


@dataclass(frozen=True)
class NoOptions:
    """Options of a method that takes none (the baselines)."""


@dataclass(frozen=True)
class CarrierOptions:
    """Options of a method that carries the painted masks with a field (``flow``, ``dis``, the registration peers).

    Attributes:
        anchor: anchored carrying (:meth:`cineprop.flow.Field.anchored`): each frame's displacement is
            checked against the painted frame and corrected, instead of warping the previous frame's
            mask (the peers as a Slicer user has them: ``False``).
        refine: correct every carried mask with the carrier refiner (registration-guided refinement,
            :mod:`cineprop.refine`); needs ``anchor``.
        refiner: the refiner checkpoint (``cineprop train-refiner``); ``None``: the bundled one.
        refine_below: refine only frames whose registration match with the painted frame is below
            this (1: every frame).
        refine_step: the share of the refiner's correction taken (1: all of it).
        absent_above: empty the carried mask on query frames where the presence check says the
            structure left the frame with a probability above this (1, the peers as a Slicer user has
            them: never); needs ``anchor``.
        absent_below_match: empty only frames whose registration match is below this (``inf``: any).
        absent_outward: empty only runs of such frames that reach the cine's end beyond the painted
            frames (:func:`cineprop.support.outward_runs`).
        match_weight: between two painted frames, weigh each carried chain also by its registration
            match to this power (0, the peers as a Slicer user has them: by distance only); needs ``anchor``.
        presence: the presence checkpoint (``cineprop train-presence``); ``None``: the bundled one.
        box: compute the optical flow only in a box around the painted masks
            (:func:`cineprop.flow.flow_box`; ``flow``, ``dis``, ``dis_fine`` only; the peers as a Slicer
            user has them: ``False``, the whole frame).
    """

    anchor: bool = False
    refine: bool = False
    refiner: str | None = None
    refine_below: float = REFINE_BELOW
    refine_step: float = REFINE_STEP
    absent_above: float = 1.0
    absent_below_match: float = math.inf
    absent_outward: bool = False
    presence: str | None = None
    match_weight: float = 0.0
    box: bool = False


@dataclass(frozen=True)
class CheckpointOptions:
    """Options of a method with weights.

    Attributes:
        checkpoint: a ``.pt`` written by ``cineprop train-image``/``relearn``; ``None``: the bundled one.
        device: torch device string; ``None``: cpu.
    """

    checkpoint: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class ModelOptions(CheckpointOptions):
    """``--method model``: the checkpoint, and the settings of its sessions (set by their field names,
    e.g. ``flow_weight``, ``flag_threshold``)."""

    session: SessionConfig = SessionConfig()


@dataclass(frozen=True)
class Method:
    """A registered method: ``"module:callable"`` of its factory and of its options dataclass."""

    factory: str
    options: str
    description: str


_NONE = "cineprop.methods:NoOptions"
_CARRIER = "cineprop.methods:CarrierOptions"
_REGISTRY: dict[str, Method] = {
    "copy": Method("cineprop.baselines:CopyPropagator", _NONE, "repeat the nearest support frame's mask (baseline)"),
    "interpolate": Method("cineprop.interpolation:InterpolatePropagator", _NONE,
                          "linear shape interpolation between painted frames, nearest painting outside them "
                          "(baseline)"),
    "flow": Method("cineprop.baselines:FlowPropagator", _CARRIER,
                   "warp the nearest support masks with dense optical flow (baseline)"),
    "dis": Method("cineprop.baselines:DisPropagator", _CARRIER,
                  "as flow, with OpenCV DIS optical flow (peer baseline)"),
    "dis_fine": Method("cineprop.baselines:DisFinePropagator", _CARRIER,
                       "as dis, down to full resolution: slower, more accurate on long chains"),
    "demons": Method("cineprop.baselines:DemonsPropagator", _CARRIER,
                     "carry the nearest support masks with SimpleITK demons registration (peer baseline)"),
    "syn": Method("cineprop.baselines:SynPropagator", _CARRIER,
                  "as demons, with ANTs SyN registration (peer baseline; optional extra 'peers')"),
    "elastix": Method("cineprop.baselines:ElastixPropagator", _CARRIER,
                      "as demons, with elastix B-spline registration (peer baseline; optional extra 'elastix')"),
    "model": Method("cineprop.methods:learned_propagator", "cineprop.methods:ModelOptions",
                    "few-shot image model with confidence-gated memory (bundled checkpoint by default)"),
    "relearn": Method("cineprop.relearn.propagator:RelearnPropagator", "cineprop.relearn.propagator:RelearnOptions",
                      "per-cine test-time spatiotemporal consistency relearning of the image model, then two-stage "
                      "inference (options: --steps, --option KEY=VALUE)"),
}

#: ``--method model``'s propagator by checkpoint kind (the kind also chose the model class it loads)
_LEARNED_BY_KIND: dict[str, str] = {
    "image": "cineprop.model_propagator:ModelPropagator",
    "relearn": "cineprop.relearn.propagator:TwoStagePropagator",
}


def learned_propagator(checkpoint: str | None = None, device: str | None = None,
                       session: SessionConfig = SessionConfig()) -> Propagator:
    """``--method model`` (:class:`ModelOptions`): load the checkpoint once; its kind picks the propagator.

    An ``image`` checkpoint propagates with sessions (:class:`~cineprop.model_propagator.ModelPropagator`),
    a ``relearn`` one with the video model's two-stage inference
    (:class:`~cineprop.relearn.propagator.TwoStagePropagator`).
    """
    from cineprop.checkpoints import load_model
    from cineprop.threads import configure_threads

    device = device or "cpu"
    configure_threads(device)
    model, payload = load_model(checkpoint, device)
    return _load(_LEARNED_BY_KIND[payload.get("kind", "image")])(model, payload, device, session)


def _load(target: str) -> Callable[..., Any]:
    """The callable named ``"module:attr"`` (imported on first use)."""
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def _method(name: str) -> Method:
    if name not in _REGISTRY:
        raise CinepropError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def register(name: str, factory: str, description: str, options: str = _NONE) -> None:
    """Register a method: its factory and options dataclass as ``"module:attr"`` (see the module docstring)."""
    _REGISTRY[name] = Method(factory, options, description)


def unregister(name: str) -> None:
    """Forget method ``name`` (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def available() -> dict[str, str]:
    """Method names and one-line descriptions."""
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def accepted_options(name: str) -> frozenset[str]:
    """The names :func:`method_options` accepts for method ``name`` (``checkpoint``, ``flow_weight``, ...)."""
    return frozenset(option_names(_load(_method(name).options)()))


def method_options(name: str, settings: Mapping[str, Any] | None = None, ignore_unknown: bool = False) -> Any:
    """Method ``name``'s options object from settings by name; strings are converted (:mod:`cineprop.options`).

    Args:
        settings: ``{name: value}``; ``None`` values mean "not given" (front ends pass every flag).
        ignore_unknown: drop names the method does not take (one command line running several
            methods); otherwise they are an error.

    Raises:
        CinepropError: an unknown method, a name it does not take, a value that does not convert.
    """
    method = _method(name)
    options = _load(method.options)()
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    names = option_names(options)
    unknown = sorted(set(given) - set(names))
    if unknown and not ignore_unknown:
        takes = f"; it takes {', '.join(sorted(names))}" if names else "; it takes none"
        raise CinepropError(f"unknown {name} option(s) {', '.join(unknown)}: method {name!r} does not take options "
                            f"by these names{takes}")
    return replace_from_strings(options, {k: v for k, v in given.items() if k in names}, name)


def build_propagator(name: str, config: Any = None, /, **settings: Any) -> Propagator:
    """Build method ``name`` from its options object ``config`` (:func:`method_options`), or from ``settings``.

    ``settings`` are names :func:`method_options` accepts, ``None`` meaning "not given"; a dict
    ``options=`` (``--option KEY=VALUE``) adds more, the named settings winning.
    """
    if config is None:
        settings = {**(settings.pop("options", None) or {}), **settings}
        config = method_options(name, settings)
    elif settings:
        raise CinepropError("build_propagator: give an options object or settings by name, not both")
    factory: Callable[..., Propagator] = _load(_method(name).factory)
    return factory(**{f.name: getattr(config, f.name) for f in fields(config)})
