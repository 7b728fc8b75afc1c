"""Every ``--conf`` key and every per-request parameter of the app, typed, in one place.

MONAI Label hands the app ``--conf KEY VALUE`` pairs as strings (``Dict[str, str]``) and merges a
request's ``params`` JSON into the request dict; values typed into the Slicer "Options" table arrive
as strings too. This module is the only place where those strings become typed values: the rest of
the app reads :class:`AppSettings` (fixed for the server's life) and :class:`InferOptions` (one
request).

Bad ``--conf`` values raise :class:`SettingsError` (the server refuses to start, naming the key);
bad request parameters raise :class:`RequestError` (the client gets HTTP 400 with the message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

#: The propagation method used when ``--conf method`` is not given.
DEFAULT_METHOD = "model"
#: Used instead of :data:`DEFAULT_METHOD` while that method is not installed (logged at start).
FALLBACK_METHOD = "flow"
#: Datastore label tags searched, in order, for a saved support when a request uploads none.
DEFAULT_SUPPORT_TAGS = ("support", "final")
#: Label tag under which ``save_support`` stores an uploaded support.
SUPPORT_TAG = "support"
#: File name of a published checkpoint in the app's ``model/`` folder (picked up without restart).
PUBLISHED_CHECKPOINT = "cineprop.pt"
#: Result file types a client may ask for with ``result_extension``.
RESULT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
#: Segment names whose painted voxels are never used as support (Slicer's scribble helpers).
IGNORED_SEGMENT_NAMES = frozenset({"background", "background_scribbles"})

#: ``--conf`` keys of this app and what they do (``docs/monailabel.md`` lists the same).
CONF_KEYS: dict[str, str] = {
    "method": f"propagation method (default {DEFAULT_METHOD!r}, or {FALLBACK_METHOD!r} when neither method nor "
              f"checkpoint is configured and {DEFAULT_METHOD!r} has no usable weights); see `cineprop predict --help`",
    "checkpoint": "model checkpoint (.pt) for learned methods, used until training publishes model/cineprop.pt "
                  "in the app folder (which then wins; delete it to go back); default: the method's bundled "
                  "weights. Reloaded when the file changes",
    "device": "torch device for learned methods, e.g. cpu or cuda:0 (default: the method's, cpu)",
    "relearn_steps": "test-time relearning steps per cine for the 'relearn' method (default: the method's)",
    "flow_method": "the registration carrier of the model's flow blend (default: the method's, dis); dis_fine is "
                   "the accurate mode (full-resolution DIS: more accurate on long cines, about half the speed; "
                   "docs/benchmarks.md)",
    "flow_box": "true: the carrier computes its optical flow only in a box around the painted masks (with "
                "flow_method dis_fine, the mode for long cines: dis_fine's accuracy at 0.78x the default's speed; "
                "default: the method's, false)",
    "flag_threshold": "frames with confidence below this (0..1) are flagged for review (default 0.5)",
    "support_tags": "comma-separated datastore label tags searched for a saved support when a request "
                    f"uploads none (default {','.join(DEFAULT_SUPPORT_TAGS)})",
    "labels": "comma-separated structure names for label values 1, 2, ... (default: 'label N')",
    "preload": "build the propagator (load the model) when the server starts rather than on the first "
               "request (default true)",
    "session_cache": "live propagation sessions kept for recently used studies, so a second infer with one more "
                     "painted frame recomputes only what changed (default 4; 0 disables)",
    "session_cache_mb": "memory cap of those sessions in MB; least recently used are evicted beyond it (default 2048)",
    "infer_threads": "inferences run in up to this many worker threads, so /info, the datastore and other users "
                     "are answered meanwhile (default 1); 0 keeps MONAI Label's behaviour, which blocks the "
                     "whole server during an inference",
    "cors_origins": "comma-separated web origins (e.g. http://127.0.0.1:3000 for an OHIF viewer) whose pages may "
                    "call the server; default none: a browser page from any other site is refused (403)",
    "upload_max_mb": "largest decompressed size of an upload (float32 voxels, or a .zip's contents), checked from "
                     "its headers before reading (default 512; 0: no limit)",
    "upload_seconds": "longest time reading and converting one upload may take (default 60; 0: no limit)",
    "upload_memory_mb": "most memory reading one upload may add (default 4096; 0: no limit)",
}
#: Keys MONAI Label itself (or its sample-app conventions) reads; accepted without a warning.
MONAI_LABEL_KEYS = frozenset({"server_mode", "models", "auth_token", "use_pretrained_model", "skip_trainers",
                              "skip_strategies", "skip_scoring"})


class SettingsError(ValueError):
    """A ``--conf`` value the app cannot use; the message names the key."""


class RequestError(ValueError):
    """A request parameter the app cannot use (HTTP 400); the message names the parameter."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: Any, name: str, error: type[ValueError] = RequestError) -> bool:
    """``True/False`` or one of ``1/0, true/false, yes/no, on/off`` (any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise error(f"{name}: expected true or false, got {value!r}")


def parse_float(value: Any, name: str, low: float, high: float, error: type[ValueError] = RequestError) -> float:
    """A number in ``[low, high]``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}") from None
    if not low <= number <= high:
        raise error(f"{name}: {number:g} is outside [{low:g}, {high:g}]")
    return number


def parse_int(value: Any, name: str, low: int = 0, error: type[ValueError] = RequestError) -> int:
    """An integer ``≥ low`` (``"3"`` and ``3.0`` accepted, ``3.5`` refused)."""
    try:
        number = float(value)
        if number != int(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise error(f"{name}: expected an integer ≥ {low}, got {value!r}") from None
    if number < low:
        raise error(f"{name}: {int(number)} is below {low}")
    return int(number)


def parse_carrier(value: str | None) -> str | None:
    """``--conf flow_method``: one of the carriers a model session may blend with, or ``None``."""
    if value is None:
        return None
    from cineprop.baselines import CARRIERS

    if value not in CARRIERS:
        raise SettingsError(f"--conf flow_method {value!r}: choose one of {', '.join(CARRIERS)}")
    return value


def parse_frames(value: Any, name: str = "support_frames") -> tuple[int, ...] | None:
    """Frame indices: a list, one int, or a string ``"0,5"``/``"0 5"``; empty or ``None`` → ``None`` (all)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        items: Iterable[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    frames = tuple(sorted({parse_int(v, name) for v in items}))
    return frames or None


def parse_names(value: Any, name: str, error: type[ValueError] = RequestError) -> tuple[str, ...]:
    """Names from a JSON list or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise error(f"{name}: not a valid JSON list: {text!r}") from None
        else:
            items = text.split(",")
    names = tuple(str(v).strip() for v in items if str(v).strip())
    return names


@dataclass(frozen=True)
class AppSettings:
    """The app's configuration, built once from ``--conf`` by :meth:`from_conf`.

    Attributes:
        method: propagation method passed to ``cineprop.methods.build_propagator``.
        checkpoint: explicit checkpoint file, or ``None`` (bundled); a published ``model/cineprop.pt`` wins.
        device: torch device for learned methods, ``None`` for the method's default.
        relearn_steps: relearning steps (``steps`` option) for methods that take it.
        flow_method: the carrier of the flow blend (``flow_method`` option), ``None`` for the method's.
        flow_box: the carrier's flow only in a box around the paint (``flow_box`` option), ``None``: the method's.
        flag_threshold: default confidence threshold under which frames are flagged.
        support_tags: datastore tags searched for a saved support, in order.
        labels: names of label values 1..N (may be empty).
        preload: build the propagator at server start.
        infer_threads: worker threads serving /infer (0: MONAI Label's blocking endpoint).
        session_cache, session_cache_mb: live sessions kept (0: none) and their memory cap in MB
            (``lib/session_cache.py``).
        note: why the method differs from the default one (logged), else ``None``.
        fallback: method served instead when ``method`` cannot be built (only when neither
            ``method`` nor ``checkpoint`` was configured), else ``None``.
    """

    method: str = FALLBACK_METHOD
    checkpoint: Path | None = None
    device: str | None = None
    relearn_steps: int | None = None
    flow_method: str | None = None
    flow_box: bool | None = None
    flag_threshold: float = 0.5
    support_tags: tuple[str, ...] = DEFAULT_SUPPORT_TAGS
    labels: tuple[str, ...] = ()
    preload: bool = True
    infer_threads: int = 1
    session_cache: int = 4
    session_cache_mb: int = 2048
    note: str | None = None
    fallback: str | None = None
    unknown_keys: tuple[str, ...] = field(default=())

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None, available: Iterable[str]) -> "AppSettings":
        """Parse MONAI Label's ``conf`` dict; ``available`` are the installed method names."""
        conf = dict(conf or {})
        available = set(available)
        note, fallback = None, None
        if "method" in conf:
            method = conf["method"].strip()
            if method not in available:
                raise SettingsError(f"--conf method {method!r}: not installed; choose one of "
                                    f"{', '.join(sorted(available))}")
        elif DEFAULT_METHOD in available:
            method = DEFAULT_METHOD
            # Nothing asked for explicitly: if its weights cannot be loaded, serve the baseline.
            fallback = FALLBACK_METHOD if not str(conf.get("checkpoint") or "").strip() else None
        else:
            method = FALLBACK_METHOD
            note = (f"method {DEFAULT_METHOD!r} is not installed: using {FALLBACK_METHOD!r} "
                    f"(set --conf method to choose)")

        def get(key: str) -> str | None:
            value = conf.get(key)
            return None if value is None or not str(value).strip() else str(value).strip()

        checkpoint = Path(get("checkpoint")).expanduser().absolute() if get("checkpoint") else None
        steps = get("relearn_steps")
        threads = get("infer_threads")
        threshold = get("flag_threshold")
        tags = parse_names(get("support_tags"), "--conf support_tags", SettingsError) if get("support_tags") else None
        if tags is not None and not tags:
            raise SettingsError("--conf support_tags: give at least one tag")
        return cls(
            method=method,
            checkpoint=checkpoint,
            device=get("device"),
            relearn_steps=parse_int(steps, "--conf relearn_steps", 0, SettingsError) if steps else None,
            flow_method=parse_carrier(get("flow_method")),
            flow_box=parse_bool(get("flow_box"), "--conf flow_box", SettingsError) if get("flow_box") else None,
            flag_threshold=(parse_float(threshold, "--conf flag_threshold", 0.0, 1.0, SettingsError)
                            if threshold else 0.5),
            support_tags=tags or DEFAULT_SUPPORT_TAGS,
            labels=parse_names(get("labels"), "--conf labels", SettingsError) if get("labels") else (),
            preload=parse_bool(conf.get("preload", "true"), "--conf preload", SettingsError),
            infer_threads=parse_int(threads, "--conf infer_threads", 0, SettingsError) if threads else 1,
            session_cache=parse_int(get("session_cache"), "--conf session_cache", 0, SettingsError)
            if get("session_cache") else 4,
            session_cache_mb=parse_int(get("session_cache_mb"), "--conf session_cache_mb", 1, SettingsError)
            if get("session_cache_mb") else 2048,
            note=note,
            fallback=fallback,
            unknown_keys=tuple(sorted(k for k in conf if k not in CONF_KEYS and k not in MONAI_LABEL_KEYS)),
        )

    def label_name(self, value: int) -> str:
        """Configured name of label ``value`` (1-based), else ``"label N"``."""
        return self.labels[value - 1] if 0 < value <= len(self.labels) else f"label {value}"


@dataclass(frozen=True)
class InferOptions:
    """Per-request parameters of the ``cineprop`` infer task (all optional).

    Attributes:
        support_frames: use only these frames of the support label (default: every painted frame).
            After a first propagation the client's segmentation covers every frame; naming the
            frames the user painted keeps the others from becoming support.
        slice_index: 4D images: propagate only this slice position (default: every painted one).
        flag_threshold: confidence under which a frame is flagged (default: ``--conf flag_threshold``).
        save_support: store the support used (its support frames only) in the datastore under the
            ``support`` tag, for later requests without upload, scoring and batch infer.
        result_extension: file type of the returned label volume (Slicer asks for ``.nrrd``).
        label_names: ``{value: name}`` from the client's ``label_info``.
        ignored_labels: label values named ``background``/``background_scribbles`` by the client.
    """

    support_frames: tuple[int, ...] | None = None
    slice_index: int | None = None
    flag_threshold: float = 0.5
    save_support: bool = False
    result_extension: str = ".nii.gz"
    label_names: Mapping[int, str] = field(default_factory=dict)
    ignored_labels: frozenset[int] = frozenset()

    @classmethod
    def from_request(cls, request: Mapping[str, Any], settings: AppSettings) -> "InferOptions":
        """Read the optional parameters from a MONAI Label request dict; raise :class:`RequestError`."""
        threshold = request.get("flag_threshold")
        slice_index = request.get("slice_index")
        extension = str(request.get("result_extension") or ".nii.gz").strip().lower()
        if not extension.startswith("."):
            extension = "." + extension
        if extension not in RESULT_EXTENSIONS:
            raise RequestError(f"result_extension: {extension!r} is not supported; use one of "
                               f"{', '.join(RESULT_EXTENSIONS)}")
        dtype = str(request.get("result_dtype") or "uint8").strip().lower()
        if dtype != "uint8":
            raise RequestError(f"result_dtype: {dtype!r} is not supported; labels are written as uint8")
        names, ignored = _label_info(request.get("label_info"))
        return cls(
            support_frames=parse_frames(request.get("support_frames")),
            slice_index=(None if slice_index is None or str(slice_index).strip() == ""
                         else parse_int(slice_index, "slice_index")),
            flag_threshold=(settings.flag_threshold if threshold is None or str(threshold).strip() == ""
                            else parse_float(threshold, "flag_threshold", 0.0, 1.0)),
            save_support=parse_bool(request.get("save_support", False), "save_support"),
            result_extension=extension,
            label_names=names,
            ignored_labels=ignored,
        )


def _label_info(value: Any) -> tuple[dict[int, str], frozenset[int]]:
    """``label_info`` (a list of ``{"name", "id"|"idx"}``, or its JSON) → names by value, ignored values.

    The Slicer client exports segments to label values by their 1-based position in the list and
    sends Slicer segment IDs (strings) as ``id``; an integer ``idx``/``value`` wins when present.
    """
    if value is None or value == "":
        return {}, frozenset()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RequestError(f"label_info: not valid JSON: {value!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RequestError("label_info: expected a list of {\"name\": ..., \"idx\": ...} objects")
    names: dict[int, str] = {}
    for position, entry in enumerate(value, start=1):
        number = position
        for key in ("idx", "value"):
            if key in entry:
                number = parse_int(entry[key], f"label_info[{position - 1}].{key}", 0)
                break
        if number == 0:  # background
            continue
        names[number] = str(entry.get("name") or f"label {number}")
    ignored = frozenset(v for v, n in names.items() if n.strip().lower() in IGNORED_SEGMENT_NAMES)
    return names, ignored
