"""What both train tasks share: request options, the starting checkpoint, publishing, stats files.

Publishing (:func:`publish`): the new checkpoint replaces ``model/cineprop.pt`` by one rename
(``cineprop.io.atomic_path``), so the server's :class:`lib.service.PropagationService` sees either
the old or the new file, never half of one, and reloads it on the next request (it watches the
file's modification time). The file it replaces is first kept as ``model/cineprop.prev.pt``
(rollback: copy that back, or delete ``model/cineprop.pt`` to serve ``--conf checkpoint`` / the
bundled weights again).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from cineprop.io import atomic_path, atomic_write_text
from lib.configs.settings import PUBLISHED_CHECKPOINT, AppSettings, parse_float, parse_int
from lib.service import PropagationService

logger = logging.getLogger(__name__)

#: The checkpoint a publication replaced (one generation is kept, for rollback).
PREVIOUS_CHECKPOINT = "cineprop.prev.pt"
#: Folder under ``model/`` where a train task writes its checkpoint before publishing it.
STAGING_DIR = "train"


def publish(staged: str | os.PathLike, model_dir: str | os.PathLike) -> dict:
    """Make ``staged`` the served ``model/cineprop.pt`` atomically; keep the replaced one as ``cineprop.prev.pt``.

    Returns ``{"checkpoint": published path, "previous": kept path or None}``. ``staged`` is moved.
    """
    model_dir = Path(model_dir)
    target = model_dir / PUBLISHED_CHECKPOINT
    previous = None
    if target.is_file():
        previous = model_dir / PREVIOUS_CHECKPOINT
        with atomic_path(previous) as tmp:
            shutil.copyfile(target, tmp)
    with atomic_path(target) as tmp:
        shutil.move(os.fspath(staged), tmp)
    return {"checkpoint": str(target), "previous": str(previous) if previous else None}


def read_option(request: Mapping[str, Any], key: str, default: Any, kind: str, low: float = 0, high: float = 1) -> Any:
    """``request[key]`` as an int (``kind="int"``, ≥ ``low``) or float in ``[low, high]``; ``default`` when absent.

    Values typed into Slicer's options table arrive as strings; empty means absent. Raises
    :class:`lib.configs.settings.RequestError` (HTTP 400) naming the option.
    """
    value = request.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if kind == "int":
        return parse_int(value, key, int(low))
    return parse_float(value, key, low, high)


class StepLogger:
    """``on_step`` callback for the core's training loops: about ten progress lines per run in the server log."""

    def __init__(self, task: str):
        self.task = task
        self.start = time.perf_counter()

    def __call__(self, step: int, total: int, loss: Any) -> None:
        if step == 1 or step == total or step % max(1, total // 10) == 0:
            if isinstance(loss, Mapping):
                loss = sum(float(v) for v in loss.values())
            logger.info(f"{self.task}: step {step}/{total}, loss {float(loss):.4f}, "
                        f"{time.perf_counter() - self.start:.1f} s")


class CinepropTrainTask(TrainTask):
    """Base of the cineprop train tasks (a plain MONAI Label ``TrainTask``: no ignite, no MONAI engine).

    Subclasses set :attr:`name` and :attr:`defaults` and implement :meth:`train`. Construction is
    cheap (MONAI Label rebuilds the app in every train subprocess); torch code is imported in
    :meth:`train`.
    """

    name = ""
    defaults: dict[str, Any] = {}

    def __init__(self, description: str, service: PropagationService, settings: AppSettings,
                 model_dir: str | os.PathLike):
        super().__init__(description)
        self.service = service
        self.settings = settings
        self.model_dir = Path(model_dir)

    def config(self) -> dict[str, Any]:
        # Shown in /info and as Slicer's options table; sent back as request params.
        return dict(self.defaults)

    @property
    def stats_path(self) -> Path:
        return self.model_dir / f"train_stats_{self.name}.json"

    def stats(self) -> dict:
        """The last run's stats (``/info``'s ``train_stats``); ``{}`` before the first run."""
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def staged_path(self) -> Path:
        """Where this task writes its checkpoint before publishing (emptied before a run)."""
        folder = self.model_dir / STAGING_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(f"{self.name}*.pt"):
            leftover.unlink()
        return folder / f"{self.name}.pt"

    def start_checkpoint(self) -> str | None:
        """The checkpoint being served now (published, else ``--conf checkpoint``); ``None``: bundled."""
        path = self.service.checkpoint()
        return str(path) if path is not None else None

    def write_stats(self, stats: dict) -> dict:
        atomic_write_text(self.stats_path, json.dumps(stats, indent=1, default=str))
        return stats

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict:
        from lib.errors import http_errors

        start = time.time()
        logger.info(f"{self.name}: request {({k: v for k, v in request.items() if k not in ('gpus', 'local_rank')})}")
        try:
            with http_errors():
                stats = self.train(request, datastore, StepLogger(self.name))
        except Exception as exc:
            logger.error(f"{self.name}: failed: {getattr(exc, 'detail', None) or exc}")
            raise
        stats.update(task=self.name, started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
                     seconds=round(time.time() - start, 1))
        logger.info(f"{self.name}: done in {stats['seconds']} s: "
                    f"{'published ' + stats['checkpoint'] if stats.get('published') else 'nothing published'}")
        return self.write_stats(stats)

    def train(self, request: dict[str, Any], datastore: Datastore, on_step: Callable) -> dict:
        raise NotImplementedError
