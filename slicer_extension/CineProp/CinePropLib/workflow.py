"""The annotation loop on numpy arrays: paint → propagate → review → correct → submit → train → next.

:class:`CineWorkflow` is everything the Slicer module does except touching MRML nodes: it takes a
:class:`~CinePropLib.conversions.CineArrays` (``I×J×T``) and the user's labels (``I×J×T`` uint8),
talks to the server through :class:`~CinePropLib.client.CinePropClient`, and returns arrays. The
Slicer logic class converts nodes to these arrays and back (``CinePropLib.nodes``).
"""

from __future__ import annotations

import hashlib
import logging
import re
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
from CinePropLib.volumefiles import file_positions, read_cine_file, write_cine, write_labels, write_slice_labels

logger = logging.getLogger(__name__)

#: Server task names (issue 5): the infer task, the two train tasks and the active-learning strategy.
INFER_TASK = "cineprop"
RELEARN_TASK = "cineprop_relearn"
IMAGE_TRAIN_TASK = "cineprop_image"
STRATEGY = "cineprop_uncertain"
CLIENT_ID = "slicer-cineprop"


def default_client_id(user: str | None = None) -> str:
    """The ``client_id`` stored with what this user submits: ``slicer-<login or OS user>``."""
    if not user:
        import getpass

        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name on this system
            user = ""
    return f"{CLIENT_ID}-{_safe_name(user)}" if user else CLIENT_ID


class WorkflowError(Exception):
    """A step the user cannot take now (nothing painted, no server, ...); the message says what to do."""


def describe_error(exc: BaseException) -> str:
    """One readable line for the panel; never a traceback."""
    if isinstance(exc, (WorkflowError, ServerError, ConversionError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Not enough memory for this cine; crop it or close other data."
    return f"Unexpected error ({exc.__class__.__name__}: {exc}); details are in the Python console."


#: The train tasks' progress line (``monailabel_app/lib/trainers/common.py``, ``StepLogger``).
_STEP_LINE = re.compile(r"step (\d+)/(\d+), loss ([-+0-9.eE]+|nan|inf)")


@dataclass
class TrainingProgress:
    """The server's latest train task as the panel shows it."""

    status: str            # NONE, SUBMITTED, RUNNING, DONE, ERROR, STOPPED
    task: str | None
    message: str
    step: int | None = None       # from the app's "<task>: step 40/200, loss 0.3127, 12.5 s" log lines
    total: int | None = None
    loss: float | None = None

    @property
    def running(self) -> bool:
        return self.status in ("SUBMITTED", "RUNNING")

    @classmethod
    def from_log(cls, status: str, task: str | None, lines: Sequence[str]) -> "TrainingProgress":
        """The status and the latest step/loss found in the task's log ``lines`` (newest last)."""
        message = lines[-1][-160:] if lines else ""
        for line in reversed(lines):
            match = _STEP_LINE.search(line)
            if match:
                return cls(status, task, message, int(match[1]), int(match[2]), float(match[3]))
        return cls(status, task, message)

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
        self._study_slices: dict[str, tuple[Path, int]] = {}   # 4D studies: image id → (its file, slice shown)
        self.client_id = default_client_id()

    # -- server ------------------------------------------------------------------------------
    def connect(self, url: str, username: str = "", password: str = "", verify_tls: bool = True) -> str:
        """Connect to ``url`` (logging in when the server has authentication on); returns a one-line status."""
        client = CinePropClient(url, verify_tls=verify_tls)
        secured = client.auth_enabled()
        if secured:
            client.login(username, password)
        elif username:
            logger.info("the server at %s has authentication off; the login was not used", client.url)
        self.client_id = default_client_id(username or None)
        info = client.info()
        self.client, self.info = client, info
        wanted = {"models": [INFER_TASK], "trainers": [RELEARN_TASK, IMAGE_TRAIN_TASK], "strategies": [STRATEGY]}
        missing = [t for key, names in wanted.items() for t in names if t not in (info.get(key) or {})]
        name = info.get("name", "MONAI Label")
        version = info.get("version", "")
        status = f"Connected to {name} {version}".strip() + (f" as {username}" if secured else "")
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

    def open_study_file(self, image_id: str, path: str | Path, slice_index: int | None = None):
        """A study's file → (``I×J×T`` frames, ``IJKToRAS``).

        A 4D ``H×W×Z×T`` study shows position ``slice_index``; its labels then go to and come from the
        server in the file's 4D shape, with ``slice_index``.
        """
        stacked = file_positions(path) > 1
        frames, grid = read_cine_file(path, slice_index if stacked else None)
        if stacked:
            self._study_slices[image_id] = (Path(path), int(slice_index))
        else:
            self._study_slices.pop(image_id, None)
        return frames, grid

    def _write_study_labels(self, path: Path, labels: np.ndarray, cine: CineArrays, image_id: str | None,
                            base: Path | None = None) -> Path:
        """Labels as the server takes them for this cine: on its grid, or in a 4D study's file shape."""
        if image_id in self._study_slices:
            reference, z = self._study_slices[image_id]
            return write_slice_labels(path, labels, z, reference, base)
        return write_labels(path, labels, cine.ijk_to_ras)

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
                  params: Mapping[str, Any] | None = None, record: bool = True) -> PropagationResult:
        """Propagate the support frames of ``labels`` through ``cine``.

        Args:
            cine: the cine (``I×J×T``); uploaded as a session unless ``image_id`` names it on the server.
            labels: the user's segmentation, ``I×J×T`` uint8 with ``segments``' values.
            segments: the segments and their label values (sent as ``label_names``).
            image_id: the datastore id when the cine came from the server.
            threshold: confidence below which a query frame is flagged.
            params: extra infer parameters (e.g. ``{"method": "relearn"}``).
            record: remember the result as the cine's last one (what later corrections are compared
                with). The panel passes ``False`` when propagating in the background and calls
                :meth:`record` once the user is shown the result, so a cancelled one is never recorded.

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
            support = self._write_study_labels(folder / "support.nii.gz", support_label(labels, frames), cine, image_id)
            # label_info names the values (MONAI Label's convention); save_support keeps the painted
            # frames of a datastore study on the server for scoring, batch infer and active learning.
            request = {"support_frames": frames, "label_info": label_info(segments), "flag_threshold": float(threshold),
                       "save_support": bool(image_id), "result_extension": ".nii.gz", "result_dtype": "uint8",
                       "client_id": self.client_id, **dict(params or {})}
            slice_index = self._study_slices[image_id][1] if image_id in self._study_slices else None
            if slice_index is not None:
                request["slice_index"] = slice_index          # the server propagates that position only
            session_id = None if image_id else self._session(cine)
            response = client.infer(INFER_TASK, folder, image_id=image_id, session_id=session_id, label=support,
                                    params=request)
            if response.label_path is None:
                raise WorkflowError(f"The server returned no label volume ({response.params or 'empty answer'})")
            array, grid = read_cine_file(response.label_path, slice_index)
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
        if record:
            self.record(cine, result)
        return result

    def record(self, cine: CineArrays, result: PropagationResult) -> None:
        """The result the user now sees: frames that later differ from it are corrections (support)."""
        self.tracker(cine).record(result.labels, result.support_frames)

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
                image_id = client.upload_image(image, _safe_name(cine.name), {"client_id": self.client_id})
            # a 4D study: the other slice positions keep their final label (if any)
            base = (client.download_label(image_id, "final", folder / "current")
                    if image_id in self._study_slices else None)
            label = self._write_study_labels(folder / f"{_safe_name(image_id)}.nii.gz", labels, cine, image_id, base)
            client.save_label(image_id, label, "final",
                              {"label_info": label_info(segments), "client_id": self.client_id})
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
        return TrainingProgress.from_log(str(record.get("status", "UNKNOWN")), task, details)

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
