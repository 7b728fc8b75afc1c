"""Saving and loading model checkpoints (the one place that knows the file format).

A checkpoint is a ``torch.save`` dict: ``format``, ``kind`` (``"image"`` or ``"relearn"``),
``config`` (the :class:`~cineprop.model.ModelConfig` as a dict), ``state_dict`` and ``meta``
(training recipe, data, metrics). It is written atomically, so a server never loads half a file.

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)``, whose unpickler
builds only tensors, plain containers, numbers and strings (plus the numpy array and random-state
types in :data:`ALLOWED_GLOBALS`, which resumable training state holds). A file that needs anything
else (a pickled class, a function: what a planted checkpoint uses to run code) is refused with a
:class:`~cineprop.errors.CheckpointError` before any of it is built. :func:`save_checkpoint` reads
what it wrote back the same way, so it never writes a checkpoint the loader would refuse.

The ``kind`` chooses the model class :func:`load_model` builds; a ``relearn`` checkpoint also
stores the image weights its stage 1 runs, read in one place, :func:`image_model_of`.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from cineprop.errors import CheckpointError, where
from cineprop.io.atomic import atomic_write_bytes

FORMAT = "cineprop-checkpoint-1"
#: The bundled image-phase checkpoint (trained by ``cineprop train-image``; see docs/model-card.md).
BUNDLED = Path(__file__).resolve().parent / "weights" / "cineprop_image.pt"


def _allowed_globals() -> list:
    """The non-tensor types a checkpoint may hold besides plain data: numpy arrays and scalars."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:
        from numpy.core import multiarray
    dtypes = [type(np.dtype(t)) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                          "uint32", "uint64", "float16", "float32", "float64")]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _load(source) -> Any:
    """``torch.load`` that builds nothing but data (see the module docstring)."""
    with torch.serialization.safe_globals(_allowed_globals()):
        return torch.load(source, map_location="cpu", weights_only=True)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")   # how torch's weights-only unpickler names what it refused


def _refused_global(exc: Exception) -> str:
    """The name of the global the unpickler refused (``posix.system``), from torch's long message."""
    found = _GLOBAL.search(str(exc))
    return found.group(1) if found else type(exc).__name__


def default_checkpoint() -> Path:
    """The bundled checkpoint path (raises if the package was installed without it)."""
    if not BUNDLED.exists():
        raise CheckpointError(where(BUNDLED, "bundled checkpoint missing; pass --checkpoint"))
    return BUNDLED


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, kind: str = "image",
                    meta: dict[str, Any] | None = None, extra_state: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (which must have a ``config``) atomically; ``extra_state`` holds e.g. optimiser state."""
    payload = {
        "format": FORMAT,
        "kind": kind,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    if extra_state:
        payload["extra_state"] = extra_state
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        _load(io.BytesIO(buffer.getvalue()))
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler refuses
        raise CheckpointError(where(path, f"not saved: meta or extra_state holds a {_refused_global(exc)}, which "
                                          "the loader refuses (only tensors, numpy arrays and plain data)")) from None
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load the raw checkpoint dict (on CPU), validating its format."""
    p = Path(path) if path is not None else default_checkpoint()
    if not p.exists():
        raise CheckpointError(where(p, "checkpoint not found"))
    try:
        payload = _load(p)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: the file wants to build objects
        if not _GLOBAL.search(str(exc)):      # no global named: the bytes are not a pickle at all
            raise CheckpointError(where(p, "not a readable checkpoint (corrupt or not a torch file)")) from None
        raise CheckpointError(where(p, "refused: the file holds Python objects, not only weights "
                                       f"({_refused_global(exc)}); a cineprop "
                                       "checkpoint is tensors and plain data only (re-save it with "
                                       "cineprop.checkpoints.save_checkpoint)")) from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(where(p, f"not a readable checkpoint ({type(exc).__name__})")) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(where(p, f"not a cineprop checkpoint (expected format {FORMAT})"))
    return payload


def _model_class(kind: str | None, path) -> type:
    """The model class a checkpoint ``kind`` holds: ``image`` → :class:`~cineprop.model.FewShotSegmenter`,
    ``relearn`` → :class:`~cineprop.model.VideoSegmenter` (state dict keys ``tau.*`` for its TAU)."""
    from cineprop.model import FewShotSegmenter, VideoSegmenter

    classes = {"image": FewShotSegmenter, "relearn": VideoSegmenter}
    if kind not in classes:
        raise CheckpointError(where(path, f"unknown checkpoint kind {kind!r} (expected one of {sorted(classes)})"))
    return classes[kind]


def _load_weights(model: torch.nn.Module, state: dict, path, what: str) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(where(path, f"{what} do not match the model: missing {missing[:3]}, "
                                          f"unexpected {unexpected[:3]}"))


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """Build the model a checkpoint describes and load its weights strictly; eval mode.

    Returns ``(model, payload)``. The checkpoint's ``kind`` chooses the class: ``image`` gives a
    :class:`~cineprop.model.FewShotSegmenter`, ``relearn`` a :class:`~cineprop.model.VideoSegmenter`
    (its stage-1 image model: :func:`image_model_of`).
    """
    from cineprop.model import ModelConfig

    payload = read_checkpoint(path)
    model = _model_class(payload.get("kind", "image"), path or BUNDLED)(ModelConfig.from_dict(payload["config"]))
    _load_weights(model, payload["state_dict"], path or BUNDLED, "weights")
    return model.to(device).eval(), payload


def image_model_of(model: torch.nn.Module, payload: dict[str, Any], path: str | os.PathLike | None = None):
    """The image-phase model of a loaded checkpoint: what stage 1 runs, and what training starts from.

    Of an ``image`` checkpoint, ``(model, payload)`` unchanged. Of a ``relearn`` checkpoint, the
    image weights it stores (``extra_state["stage1_state_dict"]``, the model relearning started
    from; its TAU and relearned layers left out), on ``model``'s device in eval mode, with a
    payload describing it: ``kind`` ``"image"``, ``meta`` the image model's meta (the relearn
    checkpoint's ``image_meta``, plus ``relearned_from`` with the relearn meta).
    """
    from cineprop.model import FewShotSegmenter

    if payload.get("kind") != "relearn":
        return model, payload
    where_from = path or "relearn checkpoint"
    state = (payload.get("extra_state") or {}).get("stage1_state_dict")
    if state is None:
        raise CheckpointError(where(where_from, "relearn checkpoint without the image weights it started from"))
    image = FewShotSegmenter(model.config)
    _load_weights(image, state, where_from, "stored image weights")
    meta = payload.get("meta") or {}
    image_payload = {"format": FORMAT, "kind": "image", "config": payload["config"],
                     "meta": dict(meta.get("image_meta") or {}, relearned_from={
                         k: v for k, v in meta.items() if k != "image_meta"})}
    return image.to(next(model.parameters()).device).eval(), image_payload


def load_image_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """The image-phase model of any checkpoint (:func:`image_model_of` of :func:`load_model`)."""
    model, payload = load_model(path, device)
    return image_model_of(model, payload, path or BUNDLED)
