"""The annotation loop on numpy arrays: paint → propagate → review → correct → submit → train → next.

:class:`CineWorkflow` is everything the Slicer module does except touching MRML nodes: it takes a
:class:`~CinePropLib.conversions.CineArrays` (``I×J×T``) and the user's labels (``I×J×T`` uint8),
talks to the server through :class:`~CinePropLib.client.CinePropClient`, and returns arrays. The
Slicer logic class converts nodes to these arrays and back (``CinePropLib.nodes``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from CinePropLib.client import CinePropClient, ServerError, Study, _safe_name
from CinePropLib.conversions import CineArrays, ConversionError, as_labels, same_grid
from CinePropLib.results import DEFAULT_FLAG_THRESHOLD, PropagationResult, parse_result
from CinePropLib.segments import SegmentSpec, label_info
from CinePropLib.support import SupportTracker, support_label
from CinePropLib.volumefiles import read_volume, write_cine, write_labels

logger = logging.getLogger(__name__)

#: Server task names (issue 5): the infer task, the two train tasks and the active-learning strategy.
INFER_TASK = "cineprop"
RELEARN_TASK = "cineprop_relearn"
IMAGE_TRAIN_TASK = "cineprop_image"
STRATEGY = "cineprop_uncertain"
CLIENT_ID = "slicer-cineprop"


class WorkflowError(Exception):
    """A step the user cannot take now (nothing painted, no server, ...); the message says what to do."""


def describe_error(exc: BaseException) -> str:
    """One readable line for the panel; never a traceback."""
    if isinstance(exc, (WorkflowError, ServerError, ConversionError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Not enough memory for this cine; crop it or close other data."
    return f"Unexpected error ({exc.__class__.__name__}: {exc}); details are in the Python console."


@dataclass
class TrainingProgress:
    """The server's latest train task as the panel shows it."""

    status: str            # NONE, SUBMITTED, RUNNING, DONE, ERROR, STOPPED
    task: str | None
    message: str

    @property
    def running(self) -> bool:
        return self.status in ("SUBMITTED", "RUNNING")

    def text(self) -> str:
        if self.status == "NONE":
            return "No training has run on this server yet."
        head = f"{self.task or 'training'}: {self.status.lower()}"
        return f"{head} — {self.message}" if self.message else head


def cine_key(cine: CineArrays) -> str:
    """A content hash of a cine (frames and geometry): same key ⇒ same upload, same support state."""
    digest = hashlib.sha1(np.ascontiguousarray(cine.frames).tobytes())
    digest.update(np.ascontiguousarray(cine.ijk_to_ras).tobytes())
    digest.update(str(cine.frames.shape).encode())
    return digest.hexdigest()


class CineWorkflow:
    """Client-side state of the annotation loop for any number of cines."""

    def __init__(self, client: CinePropClient | None = None, workdir: str | Path | None = None) -> None:
        self.client = client
        self.info: dict = {}
        self._workdir = Path(workdir) if workdir else None
        self._sessions: dict[str, str] = {}
        self._trackers: dict[str, SupportTracker] = {}

    # -- server ------------------------------------------------------------------------------
    def connect(self, url: str) -> str:
        """Connect to ``url`` and return a one-line status (app, tasks present, tasks missing)."""
        client = CinePropClient(url)
        info = client.info()
        self.client, self.info = client, info
        wanted = {"models": [INFER_TASK], "trainers": [RELEARN_TASK, IMAGE_TRAIN_TASK], "strategies": [STRATEGY]}
        missing = [t for key, names in wanted.items() for t in names if t not in (info.get(key) or {})]
        name = info.get("name", "MONAI Label")
        version = info.get("version", "")
        status = f"Connected to {name} {version}".strip()
        return status + (f" (missing tasks: {', '.join(missing)})" if missing else "")

    def _client(self) -> CinePropClient:
        if self.client is None:
            raise WorkflowError("Not connected: enter the server address and press Connect")
        return self.client

    def _require(self, kind: str, name: str, what: str) -> None:
        """Refuse early when ``/info`` lacks a task (MONAI Label would answer a bare HTTP 500)."""
        present = sorted(self.info.get(kind) or {})
        if self.info and name not in present:
            raise WorkflowError(f"The server has no {what} '{name}' (it has: {', '.join(present) or 'none'}); "
                                "is it the cineprop app?")

    @property
    def known_labels(self) -> dict[str, int]:
        """The infer task's ``{label name: value}`` from ``/info`` (empty when it declares none)."""
        labels = ((self.info.get("models") or {}).get(INFER_TASK) or {}).get("labels") or {}
        if isinstance(labels, Mapping):
            return {str(k): int(v) for k, v in labels.items()}
        return {str(name): i + 1 for i, name in enumerate(labels)}

    def workdir(self) -> Path:
        """A private temporary folder for uploads and results (created on first use)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cineprop-slicer-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    def studies(self) -> list[Study]:
        return self._client().studies()

    def download_study(self, image_id: str) -> Path:
        """Download a study's cine into the work folder."""
        return self._client().download_image(image_id, self.workdir() / "studies")

    # -- propagation -------------------------------------------------------------------------
    def tracker(self, cine: CineArrays) -> SupportTracker:
        key = cine_key(cine)
        if key not in self._trackers:
            self._trackers[key] = SupportTracker(cine.num_frames)
        return self._trackers[key]

    def support_frames(self, cine: CineArrays, labels: np.ndarray) -> list[int]:
        """The frames the next propagation uses as support (see :class:`SupportTracker`)."""
        return self.tracker(cine).frames(as_labels(labels, cine.label_shape))

    def confirm_frame(self, cine: CineArrays, frame: int) -> None:
        """Mark a propagated frame as reviewed and correct: it becomes support."""
        self.tracker(cine).confirm(frame)

    def _session(self, cine: CineArrays) -> str:
        """Upload ``cine`` once per server session; re-upload when the server dropped it."""
        client, key = self._client(), cine_key(cine)
        session_id = self._sessions.get(key)
        if session_id and client.session_exists(session_id):
            return session_id
        path = write_cine(self.workdir() / f"{_safe_name(cine.name)}.nii.gz", cine.frames, cine.ijk_to_ras)
        try:
            self._sessions[key] = client.create_session(path)
        finally:
            path.unlink(missing_ok=True)
        return self._sessions[key]

    def propagate(self, cine: CineArrays, labels: np.ndarray, segments: Sequence[SegmentSpec],
                  image_id: str | None = None, threshold: float = DEFAULT_FLAG_THRESHOLD,
                  params: Mapping[str, Any] | None = None) -> PropagationResult:
        """Propagate the support frames of ``labels`` through ``cine``.

        Args:
            cine: the cine (``I×J×T``); uploaded as a session unless ``image_id`` names it on the server.
            labels: the user's segmentation, ``I×J×T`` uint8 with ``segments``' values.
            segments: the segments and their label values (sent as ``label_names``).
            image_id: the datastore id when the cine came from the server.
            threshold: confidence below which a query frame is flagged.
            params: extra infer parameters (e.g. ``{"method": "relearn"}``).

        Raises:
            WorkflowError: nothing painted, or a result that does not fit the cine.
            ServerError: the server refused or failed (message from the server).
        """
        labels = as_labels(labels, cine.label_shape)
        tracker = self.tracker(cine)
        frames = tracker.frames(labels)
        if not frames:
            raise WorkflowError("Paint the structure on at least one frame (the support) before propagating")
        client = self._client()
        self._require("models", INFER_TASK, "infer task")
        folder = Path(tempfile.mkdtemp(dir=self.workdir(), prefix="infer-"))
        try:
            support = write_labels(folder / "support.nii.gz", support_label(labels, frames), cine.ijk_to_ras)
            # label_info names the values (MONAI Label's convention); save_support keeps the painted
            # frames of a datastore study on the server for scoring, batch infer and active learning.
            request = {"support_frames": frames, "label_info": label_info(segments), "flag_threshold": float(threshold),
                       "save_support": bool(image_id), "result_extension": ".nii.gz", "result_dtype": "uint8",
                       "client_id": CLIENT_ID, **dict(params or {})}
            session_id = None if image_id else self._session(cine)
            response = client.infer(INFER_TASK, folder, image_id=image_id, session_id=session_id, label=support,
                                    params=request)
            if response.label_path is None:
                raise WorkflowError(f"The server returned no label volume ({response.params or 'empty answer'})")
            array, grid = read_volume(response.label_path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if array.shape != cine.label_shape:
            raise WorkflowError(f"The server's label is {array.shape} but the cine is {cine.label_shape}; "
                                "is the study on the server the cine loaded here?")
        result = parse_result(array, response.params, threshold)
        if not result.support_frames:
            result.support_frames = frames
        if not same_grid(grid, cine.ijk_to_ras, tolerance=1e-2):
            result.details["geometry_note"] = "the server's label geometry differs; placed on the cine's grid"
        tracker.record(result.labels, result.support_frames)
        return result

    # -- submit, train, next -----------------------------------------------------------------
    def submit(self, cine: CineArrays, labels: np.ndarray, segments: Sequence[SegmentSpec],
               image_id: str | None = None) -> str:
        """Save ``labels`` as the study's final label; a local cine is first added to the datastore.

        Returns the datastore id the label was saved under.
        """
        labels = as_labels(labels, cine.label_shape)
        if not labels.any():
            raise WorkflowError("The segmentation is empty; paint or propagate before submitting")
        client, folder = self._client(), Path(tempfile.mkdtemp(dir=self.workdir(), prefix="submit-"))
        try:
            if not image_id:
                image = write_cine(folder / f"{_safe_name(cine.name)}.nii.gz", cine.frames, cine.ijk_to_ras)
                image_id = client.upload_image(image, _safe_name(cine.name), {"client_id": CLIENT_ID})
            label = write_labels(folder / f"{_safe_name(image_id)}.nii.gz", labels, cine.ijk_to_ras)
            client.save_label(image_id, label, "final", {"label_info": label_info(segments), "client_id": CLIENT_ID})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return image_id

    def start_training(self, task: str, params: Mapping[str, Any] | None = None) -> TrainingProgress:
        """Start train task ``task`` (``cineprop_relearn`` or ``cineprop_image``)."""
        client = self._client()
        self._require("trainers", task, "train task")
        record = client.train(task, params)
        return TrainingProgress(str(record.get("status", "SUBMITTED")), task, "started")

    def training_progress(self) -> TrainingProgress:
        """The latest train task's status and last log line."""
        record = self._client().train_status()
        if not record:
            return TrainingProgress("NONE", None, "")
        details = [str(line).strip() for line in (record.get("details") or []) if str(line).strip()]
        task = (record.get("request") or {}).get("model")
        message = details[-1][-160:] if details else ""
        return TrainingProgress(str(record.get("status", "UNKNOWN")), task, message)

    def stop_training(self) -> None:
        self._client().stop_training()

    def next_study(self, strategy: str = STRATEGY) -> Study | None:
        """The study the active-learning strategy picks next; ``None`` when every study is done."""
        client = self._client()
        self._require("strategies", strategy, "active-learning strategy")
        pick = client.next_study(strategy)
        if pick is None:
            return None
        info = {k: v for k, v in pick.items() if k != "id"}
        return Study(str(pick["id"]), (), info)
