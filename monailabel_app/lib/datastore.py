"""The studies folder: MONAI Label's local datastore, plus clinical inputs and checks on arrival.

:class:`CinepropDatastore` is MONAI Label's ``LocalDatastore`` (same layout, index and API) with
three additions, all thin: conversion and every check live in :mod:`cineprop.io`.

* **Clinical inputs are converted on arrival** with :func:`cineprop.io.convert`.

  - *Placed in the studies folder* (a DICOM file or folder, a video file, a folder of frames, a
    ``.zip`` of a DICOM series or of frames): converted at start and whenever the folder changes
    to ``STUDIES/<name>.nii.gz``; the original stays where it was put (removing the study moves it
    to ``originals/removed/``). An input that cannot be read is left alone, logged once and listed
    under ``/info`` → ``cineprop.ingest.rejected``.
  - *Uploaded* (``PUT /datastore/image?image=<id>``, any accepted input): converted to
    ``STUDIES/<id>.nii.gz``; the upload is kept as ``STUDIES/originals/<id><suffix>``.
  - NIfTI/NRRD studies are stored as they are, after the checks every cine gets.

* **Bad input changes nothing**: an upload or label is fully checked before anything is written,
  files are written atomically, and problems are ``HTTPException``\\ s with a one-line message
  (:func:`refuse`): ids that are paths → 400, unreadable or invalid files → 422, unknown study →
  404, replacing a labelled study by one of another shape → 409.

* **Labels are checked** (``PUT /datastore/label``, saved supports, batch results): readable, one
  integer component, values 0..255 and the shape of the study's image.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict

from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore

from cineprop.errors import CinepropError
from cineprop.io import convert, read_image, read_label, stem
from cineprop.io.limited import LimitExceeded, Limits, check_input

logger = logging.getLogger(__name__)

#: Sub-folder of the studies folder that keeps uploaded originals (``originals/<id><suffix>``).
ORIGINALS = "originals"
#: Sub-folder where files are written before being renamed into place (never listed by MONAI Label).
STAGING = ".cineprop-staging"
#: Longest accepted image id or label tag.
MAX_NAME = 200
#: Sub-folder holding upload sessions (``PUT /session/``), where MONAI Label would use ``~/.cache``.
SESSIONS = ".cineprop-sessions"
#: Seconds a placed input must be unchanged before it is converted (it may still be copying).
SETTLE_SECONDS = 2.0

#: Longest id or tag in UTF-8 bytes (file systems allow 255 per name; the stored name adds a suffix).
MAX_NAME_BYTES = 200
#: Names the studies folder uses itself.
RESERVED_NAMES = frozenset({"labels", ORIGINALS, "datastore_v2.json", "datastore.json"})

# C0 and C1 controls, and the bidirectional overrides and isolates that make a name read differently.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WILDCARDS = re.compile(r'[*?<>|:"]')


def refuse(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def check_name(value: Any, what: str = "image id") -> str:
    """An image id or label tag is a plain name, never a path: refuse anything else with a 400."""
    if not isinstance(value, str) or not value.strip():
        raise refuse(400, f"{what}: must be a non-empty name")
    problem = None
    if "/" in value or "\\" in value:
        problem = "contains a path separator"
    elif value.startswith((".", "~")) or os.path.isabs(value):
        problem = "starts with '.' or '~' (a path, or a hidden file)"
    elif _CONTROL.search(value):
        problem = "contains control or text-direction characters"
    elif _WILDCARDS.search(value):
        problem = "contains one of * ? < > | : \""
    elif value != value.strip():
        problem = "starts or ends with a space"
    elif len(value) > MAX_NAME or len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME} characters or {MAX_NAME_BYTES} bytes in UTF-8"
    elif value.lower() in RESERVED_NAMES:
        problem = "is a name the studies folder uses itself"
    if problem:
        raise refuse(400, f"{what} {value[:80]!r} {problem}; ids and tags are names, not paths")
    return value


def _upload_suffix(path: str) -> str:
    """The suffix an upload's temporary file carries (MONAI Label keeps the uploaded name's suffixes)."""
    name = os.path.basename(path)
    return name[len(stem(name)):] if stem(name) != name else "".join(Path(name).suffixes)


class CinepropDatastore(LocalDatastore):
    """``LocalDatastore`` that converts clinical inputs and refuses bad input (see the module docstring)."""

    def __init__(self, datastore_path: str, limits: Limits | None = None, **kwargs: Any):
        self._limits = limits or Limits()  # for uploads (check_upload); placed inputs are the operator's
        self.rejected: Dict[str, str] = {}  # placed inputs that could not be converted: name → message
        self._tried: Dict[str, tuple] = {}  # placed input name → signature when last tried
        self._timer: threading.Timer | None = None
        self._studies = Path(datastore_path).resolve()
        super().__init__(datastore_path, **kwargs)
        if kwargs.get("auto_reload") and getattr(self, "_observer", None) is not None:
            self._watch_placed_inputs()

    # ----------------------------------------------------------------------------------------- volumes
    def _volume_suffixes(self) -> tuple[str, ...]:
        return tuple(e.replace("*", "").lower() for e in self._extensions)

    def _stage(self, name: str) -> Path:
        """A fresh path in the staging folder (same file system as the studies, so renames are atomic)."""
        staging = self._studies / STAGING
        staging.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=staging)) / name

    def check_upload(self, path: str, image_id: str) -> tuple[str, str]:
        """Check an upload, converting it when it is not a stored volume type; returns ``(file, kind)``.

        Runs within this server's upload limits (:mod:`cineprop.io.limited`: decompressed size from the
        headers, then time and memory in a child process). A converted file lies in its own staging
        folder, which the caller removes. Raises 413 over a limit, 422 for an invalid cine.
        """
        out = self._stage(f"{image_id}.nii.gz")
        try:
            stored, kind = check_input(path, out, self._volume_suffixes(), self._limits)
        except CinepropError as exc:
            shutil.rmtree(out.parent, ignore_errors=True)
            status = 413 if isinstance(exc, LimitExceeded) else 422
            raise refuse(status, str(exc).replace(path, f"upload {image_id!r}")) from None
        if stored == path:
            shutil.rmtree(out.parent, ignore_errors=True)
        return stored, kind

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        """Store an uploaded study (converted when it is DICOM, a video or a ``.zip``); see the module docstring."""
        if not image_id:
            raise refuse(400, "image id: give ?image=<id> (the upload's file name gives none)")
        image_id = check_name(image_id)
        if image_id.lower().endswith(self._volume_suffixes()):
            raise refuse(400, f"image id {image_id[:80]!r} ends with a file suffix; give the id without it "
                              f"(the study is stored as <id>{self._volume_suffixes()[0]})")
        stored, kind = self.check_upload(image_filename, image_id)
        try:
            self._check_replacement(image_id, stored)
            info = dict(image_info or {})
            if stored != image_filename:  # converted: keep what was uploaded
                suffix = _upload_suffix(image_filename) or ".dcm"
                original = self._studies / ORIGINALS / f"{image_id}{suffix}"
                info.update({"original": f"{ORIGINALS}/{original.name}", "converted_from": kind})
                self._place(image_filename, original)
            return self._register(image_id, stored, info)
        finally:
            if stored != image_filename:
                shutil.rmtree(Path(stored).parent, ignore_errors=True)

    def _check_replacement(self, image_id: str, new_file: str) -> None:
        """Replacing a study keeps its labels, so the new image must have the shape they were drawn on."""
        obj = self._datastore.objects.get(image_id)
        if not obj or not obj.labels:
            return
        old = self.get_image_uri(image_id)
        try:
            old_shape, new_shape = read_image(old).shape, read_image(new_file).shape
        except CinepropError:
            return  # the stored image is unreadable: replacing it can only help
        if old_shape != new_shape:
            raise refuse(409, f"study {image_id!r} has labels ({', '.join(obj.labels)}) drawn on a "
                              f"{'×'.join(map(str, old_shape))} image; the upload is {'×'.join(map(str, new_shape))}: "
                              "upload it under another id")

    def _place(self, source: str | Path, target: Path) -> None:
        """Copy ``source`` onto ``target`` atomically (a reader sees the old or the complete new file)."""
        staged = self._stage(target.name)
        try:
            shutil.copyfile(source, staged)
            os.chmod(staged, 0o644)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)

    def _register(self, image_id: str, image_file: str, info: Dict[str, Any]) -> str:
        """MONAI Label's ``add_image`` with an atomic copy; a replaced study keeps its labels."""
        _, ext = self._to_id(os.path.basename(image_file))
        name = self._filename(image_id, ext)
        with FileLock(self._lock_file):
            old = self._datastore.objects.get(image_id)
            old_file = self.get_image_uri(image_id) if old else ""
            self._place(image_file, self._studies / name)
            if old_file and os.path.basename(old_file) != name:  # e.g. a .nrrd study replaced by a .nii.gz
                Path(old_file).unlink(missing_ok=True)
            info = {**info, "ts": int(time.time()), "name": name}
            labels = old.labels if old else {}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext), labels=labels)
            self._update_datastore_file(lock=False)
        logger.info(f"cineprop: added study {image_id!r} ({name})")
        return image_id

    # ------------------------------------------------------------------------------------------ labels
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        """MONAI Label's ``save_label`` after checking the ids and the label against the study's image."""
        check_name(image_id)
        check_name(label_tag, "label tag")
        image = self.get_image_uri(image_id) if image_id in self._datastore.objects else ""
        if not image or not os.path.isfile(image):
            raise refuse(404, f"unknown image id {image_id!r}: not in the datastore")
        try:
            read_label(label_filename, like=read_image(image))
        except CinepropError as exc:
            raise refuse(422, str(exc).replace(label_filename, "label")) from None
        return self._store_label(image_id, label_filename, label_tag, label_info)

    def _store_label(self, image_id: str, label_file: str, tag: str, info: Dict[str, Any]) -> str:
        """MONAI Label's ``save_label`` with an atomic copy: the previous label stays whole until replaced."""
        _, ext = self._to_id(os.path.basename(label_file))
        name = self._filename(image_id, ext)
        with FileLock(self._lock_file):
            self._place(label_file, Path(self._datastore.label_path(tag)) / name)
            info = {**(info or {}), "ts": int(time.time()), "name": name}
            self._datastore.objects[image_id].labels[tag] = DataModel(info=info, ext=ext)
            self._update_datastore_file(lock=False)
        logger.info(f"cineprop: saved label {getattr(tag, 'value', tag)}/{name}")
        return image_id

    def remove_label(self, label_id: str, label_tag: str) -> None:
        check_name(label_tag, "label tag")
        if not self._datastore.label(label_id, label_tag):
            raise refuse(404, f"study {label_id!r} has no label with tag {label_tag!r}")
        super().remove_label(label_id, label_tag)

    def update_label_info(self, label_id: str, label_tag: str, info: Dict[str, Any]) -> None:
        check_name(label_tag, "label tag")
        if not self._datastore.label(label_id, label_tag):
            raise refuse(404, f"study {label_id!r} has no label with tag {label_tag!r}")
        super().update_label_info(label_id, label_tag, info)

    # MONAI Label raises ImageNotFoundException for these, which its server turns into a bare 500.
    def remove_image(self, image_id: str) -> None:
        """MONAI Label's ``remove_image``; an input placed in the folder that the study was converted
        from is moved to ``originals/removed/``, so the study does not come back at the next refresh."""
        self._known(image_id)
        source = self._placed_inputs().get(image_id)
        super().remove_image(image_id)
        if source is not None and source.exists():
            removed = self._studies / ORIGINALS / "removed"
            removed.mkdir(parents=True, exist_ok=True)
            target = removed / source.name
            if target.exists():
                target = removed / f"{source.name}.{int(time.time())}"
            os.replace(source, target)
            moved = target.relative_to(self._studies)
            logger.info(f"cineprop: study {image_id!r} removed; its source moved to {moved}")

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        self._known(image_id)
        super().update_image_info(image_id, info)

    def _known(self, image_id: str) -> None:
        if image_id not in self._datastore.objects:
            raise refuse(404, f"unknown image id {str(image_id)[:80]!r}: not in the datastore")

    # ---------------------------------------------------------------------------------- placed inputs
    def _reconcile_datastore(self):
        self._convert_placed_inputs()
        super()._reconcile_datastore()

    def _placed_inputs(self) -> Dict[str, Path]:
        """Top-level entries of the studies folder that are clinical inputs: ``{study id: path}``."""
        from cineprop.io import INPUT_SUFFIXES

        volumes = self._volume_suffixes()
        found: Dict[str, Path] = {}
        for entry in sorted(self._studies.iterdir()):
            name = entry.name
            if name.startswith(".") or name in (ORIGINALS, "labels") or name.lower().endswith(volumes):
                continue
            if entry.is_dir() or name.lower().endswith(INPUT_SUFFIXES + (".zip",)) or _has_dicom_marker(entry):
                found.setdefault(stem(name), entry)
        return found

    def _convert_placed_inputs(self) -> None:
        pending = {k: v for k, v in self._placed_inputs().items() if not self._has_image(k)}
        if not pending:
            return
        with FileLock(str(self._studies / ".cineprop-ingest.lock")):  # the server and task subprocesses
            for image_id, path in pending.items():
                signature = _signature(path)
                if self._has_image(image_id) or self._tried.get(path.name) == signature:
                    continue
                if time.time() - signature[0] < SETTLE_SECONDS:
                    self._refresh_later()
                    continue  # may still be copying
                self._tried[path.name] = signature
                try:
                    check_name(image_id)
                    out = self._stage(f"{image_id}.nii.gz")
                    try:
                        result, _ = convert(path, out)
                        os.replace(out, self._studies / f"{image_id}.nii.gz")
                    finally:
                        shutil.rmtree(out.parent, ignore_errors=True)
                except (CinepropError, HTTPException) as exc:
                    message = str(getattr(exc, "detail", exc))
                    self.rejected[path.name] = message
                    logger.warning(f"cineprop: not added: {message}")
                    continue
                self.rejected.pop(path.name, None)
                logger.info(f"cineprop: converted {path.name} -> {image_id}.nii.gz: {result.description}")

    def _has_image(self, image_id: str) -> bool:
        return image_id in self._datastore.objects or any(
            (self._studies / f"{image_id}{suffix}").exists() for suffix in self._volume_suffixes())

    def _watch_placed_inputs(self) -> None:
        """MONAI Label's watcher only sees volume files: also refresh when anything else is placed."""
        from watchdog.events import FileSystemEventHandler

        studies = str(self._studies)
        skip = (os.path.join(studies, "labels"), os.path.join(studies, ORIGINALS), os.path.join(studies, "."),
                self._datastore_config_path, self._lock_file)  # "." : staging, sessions, ingest locks

        class Placed(FileSystemEventHandler):
            def on_any_event(handler, event):  # noqa: N805 - the datastore is `self`
                path = os.path.abspath(event.src_path)
                if event.event_type in ("created", "modified", "moved", "closed") and not path.startswith(skip):
                    self._refresh_later()

        self._observer.schedule(Placed(), path=studies, recursive=True)

    def _refresh_later(self, delay: float = SETTLE_SECONDS + 0.5) -> None:
        """Refresh once the folder has been quiet for ``delay`` seconds (coalesces bursts of events)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(delay, self.refresh)
        self._timer.daemon = True
        self._timer.start()


def _signature(path: Path) -> tuple:
    """(newest mtime, total size, file count) of a file or folder: changes while it is being copied."""
    if path.is_file():
        st = path.stat()
        return st.st_mtime, st.st_size, 1
    newest, size, count = path.stat().st_mtime, 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            with_stat = os.stat(os.path.join(root, name))
            newest, size, count = max(newest, with_stat.st_mtime), size + with_stat.st_size, count + 1
    return newest, size, count


def _has_dicom_marker(path: Path) -> bool:
    from cineprop.io.dicom_header import is_dicom_file

    return path.is_file() and is_dicom_file(path)
