"""Planning a batch job: which cines, which support volume for each, where each result goes.

Layout (see docs/cohort.md):

* ``DATA_DIR/ID.nii.gz`` (or ``.nii``, ``.nrrd``, ``.mha``): the cines, 3D ``H×W×T`` or 4D ``H×W×Z×T``;
  files named ``*_label.*`` are labels, not cines.
* Support: ``--support-from labels`` takes ``DATA_DIR/ID_label.*`` beside each cine;
  ``--support-from DIR`` takes ``DIR/ID.*`` (or ``DIR/ID_label.*``). The support frames of a cine are
  the frames painted in its support volume (:meth:`cineprop.support.SupportSet.from_labels`).
* Results: ``OUT_DIR/ID.nii.gz`` (uint8, the cine's geometry; the MONAI Label datastore convention of
  a label named like its image), ``OUT_DIR/manifest.csv``, ``OUT_DIR/summary.json`` and the job's
  bookkeeping in ``OUT_DIR/.batch/`` (identity, journal, events, lock).

A cine without a support file is planned as ``no_support`` (recorded, not propagated); a problem
found while planning one cine (two candidate support files) is recorded for that cine only.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from cineprop.errors import CinepropError, InputError, where
from cineprop.io.atomic import atomic_write_text
from cineprop.io.volume import VOLUME_SUFFIXES, read_label, read_volume_header

LABEL_SUFFIX = "_label"
#: ``--support-from`` value meaning "the ``ID_label`` file beside each cine".
SUPPORT_FROM_LABELS = "labels"
OUTPUT_SUFFIX = ".nii.gz"
#: Bookkeeping folder inside OUT_DIR.
STATE_DIR = ".batch"


@dataclass(frozen=True)
class CineJob:
    """One cine file to propagate.

    Attributes:
        id: the file stem (``patient001_frame01``), unique in the job.
        image: the cine file.
        support: its support label volume (``None`` when there is none).
        output: where its label volume goes.
        problem: why it cannot be propagated (set at planning time), else ``None``.
        problem_status: the manifest status of a planning problem (``no_support`` or ``failed``).
    """

    id: str
    image: str
    support: str | None
    output: str
    problem: str | None = None
    problem_status: str = "failed"


def split_volume_name(name: str) -> tuple[str, str] | None:
    """``("ID", ".nii.gz")`` for a volume file name, ``None`` for anything else (case-insensitive suffix)."""
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return None


def _volumes(folder: Path) -> dict[str, list[Path]]:
    """Volume files of ``folder`` by stem (hidden files and ``.nhdr``/``.mhd`` data companions skipped)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        parts = split_volume_name(path.name)
        if parts is None or path.name.startswith(".") or not path.is_file():
            continue
        found.setdefault(parts[0], []).append(path)
    return found


def read_ids(path: str | os.PathLike, split: str | None = None) -> list[str]:
    """Cine ids from a split CSV (columns ``sequence,split``, as ``acdc/splits.csv``) or a one-id-per-line file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(where(p, "id/split file not found"))
    text = p.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first:
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "sequence" not in rows[0]:
            raise InputError(where(p, "split file needs the columns 'sequence,split'"))
        if split is not None and "split" not in rows[0]:
            raise InputError(where(p, "split file has no 'split' column"))
        ids = [r["sequence"].strip() for r in rows if split is None or r.get("split", "").strip() == split]
    else:
        if split is not None:
            raise InputError(where(p, "--split needs a CSV with columns 'sequence,split'"))
        ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not ids:
        raise InputError(where(p, f"no ids{'' if split is None else f' in split {split!r}'}"))
    return list(dict.fromkeys(ids))


def plan_jobs(data_dir: str | os.PathLike, support_from: str, out_dir: str | os.PathLike,
              ids: Iterable[str] | None = None, limit: int | None = None) -> list[CineJob]:
    """List the cines of ``data_dir`` (optionally only ``ids``, then only the first ``limit``) with their support.

    Raises:
        InputError: missing folders, an id of ``ids`` with no cine, OUT_DIR equal to an input folder,
            or nothing to do.
    """
    data = Path(data_dir)
    if not data.is_dir():
        raise InputError(where(data, "data folder not found"))
    out = Path(out_dir)
    support_dir = None if support_from == SUPPORT_FROM_LABELS else Path(support_from)
    if support_dir is not None and not support_dir.is_dir():
        raise InputError(where(support_dir, f"support folder not found (use a folder or '{SUPPORT_FROM_LABELS}')"))
    for folder in filter(None, (data, support_dir)):
        if out.exists() and out.resolve() == folder.resolve():
            raise InputError(where(out, "--out must not be an input folder (results would overwrite inputs)"))
    volumes = _volumes(data)
    cines = {k: v for k, v in volumes.items() if not k.endswith(LABEL_SUFFIX)}
    if ids is not None:
        wanted = list(ids)
        missing = [i for i in wanted if i not in cines]
        if missing:
            raise InputError(where(data, f"{len(missing)} requested cine(s) not found, e.g. {missing[0]}"))
        order = wanted
    else:
        order = sorted(cines)
    if limit is not None:
        order = order[:limit]
    if not order:
        raise InputError(where(data, "no cine files (ID.nii.gz, ...) found"))
    supports = volumes if support_dir is None else _volumes(support_dir)
    jobs = []
    for cine_id in order:
        output = str(out / f"{cine_id}{OUTPUT_SUFFIX}")
        images = cines[cine_id]
        if len(images) > 1:
            jobs.append(CineJob(cine_id, str(images[0]), None, output,
                                f"several cine files share the id {cine_id}: {', '.join(p.name for p in images)}"))
            continue
        names = [f"{cine_id}{LABEL_SUFFIX}"] if support_dir is None else [cine_id, f"{cine_id}{LABEL_SUFFIX}"]
        candidates = [p for n in names for p in supports.get(n, [])]
        where_ = data if support_dir is None else support_dir
        if not candidates:
            jobs.append(CineJob(cine_id, str(images[0]), None, output,
                                f"no support volume {where_ / (names[0] + '.nii.gz')}", "no_support"))
        elif len(candidates) > 1:
            jobs.append(CineJob(cine_id, str(images[0]), None, output,
                                f"several support volumes for {cine_id}: {', '.join(p.name for p in candidates)}"))
        else:
            jobs.append(CineJob(cine_id, str(images[0]), str(candidates[0]), output))
    return jobs


def output_problem(job: CineJob) -> str | None:
    """Why ``job``'s output is not a finished result (``None`` when it is a valid label volume of the cine's shape
    and geometry). Reads the whole output, so a truncated file is caught."""
    if not Path(job.output).is_file():
        return "no output file"
    try:
        cine = read_volume_header(job.image)
        label = read_label(job.output)
    except CinepropError as exc:
        return str(exc)
    if label.shape != cine.size:
        return f"output shape {label.shape} differs from the cine's {cine.size}"
    g, c = label.geometry, cine.geometry
    if not (np.allclose(g.spacing, c.spacing, atol=1e-4) and np.allclose(g.origin, c.origin, atol=1e-3)
            and np.allclose(g.direction, c.direction, atol=1e-5)):
        return "output geometry differs from the cine's"
    return None


def state_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / STATE_DIR


def check_identity(out_dir: str | os.PathLike, identity: dict, redo: bool = False) -> bool:
    """Record what produces the results in ``OUT_DIR/.batch/job.json``; refuse to mix two different jobs.

    Returns True when earlier results of the same job exist (the run resumes).

    Raises:
        CinepropError: OUT_DIR holds results of another method/checkpoint/support source (and not ``redo``).
    """
    path = state_dir(out_dir) / "job.json"
    previous = None
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
    if previous is not None and previous != identity and not redo:
        changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
        raise CinepropError(where(out_dir, f"holds results of a different job ({', '.join(changed)} differ: "
                                           f"{', '.join(f'{k}={previous.get(k)!r}' for k in changed)}); "
                                           "use another --out or pass --redo"))
    atomic_write_text(path, json.dumps(identity, indent=1, sort_keys=True) + "\n")
    return previous is not None and not redo


def remove_stale_temporaries(out_dir: str | os.PathLike) -> int:
    """Delete temporary files (``.ID.XXXX.tmp.nii.gz``) a killed worker left in OUT_DIR; returns how many."""
    removed = 0
    folder = Path(out_dir)
    if folder.is_dir():
        for path in folder.glob(".*.tmp*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
