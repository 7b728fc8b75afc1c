"""``cineprop evaluate``: score a propagation method on labelled cines.

For each cine, support frames are chosen per label from the ground truth
(:func:`cineprop.support.select_support`), the method propagates them, and every query frame is
scored (:mod:`cineprop.metrics`). The report is JSON; a short table is printed.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from cineprop.errors import InputError, where
from cineprop.io.atomic import atomic_write_text
from cineprop.io import Cine, load_labelled_cine
from cineprop.metrics import flagging_summary, score_label, summarise
from cineprop.propagation import Propagator
from cineprop.support import query_frames, select_support

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
LABEL_SUFFIX = "_label"


@dataclass(frozen=True)
class Case:
    """One labelled image file: ``ID.ext`` and ``ID_label.ext``."""

    id: str
    image: Path
    label: Path


def find_cases(data_dir: str | os.PathLike, split_file: str | os.PathLike | None = None,
               split: str | None = None) -> list[Case]:
    """List ``ID.nii.gz`` + ``ID_label.nii.gz`` pairs in ``data_dir``, optionally filtered by a split CSV.

    The split CSV has columns ``sequence,split`` (as ``acdc/splits.csv``).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(where(root, "data folder not found"))
    cases = {}
    for path in sorted(root.iterdir()):
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or path.name[: -len(suffix)].endswith(LABEL_SUFFIX):
            continue
        case_id = path.name[: -len(suffix)]
        label = root / f"{case_id}{LABEL_SUFFIX}{suffix}"
        if label.exists():
            cases[case_id] = Case(case_id, path, label)
    if split_file is not None:
        wanted = _split_ids(split_file, split)
        missing = [i for i in wanted if i not in cases]
        if missing:
            raise InputError(where(root, f"{len(missing)} sequences of the split are missing, e.g. {missing[0]}"))
        cases = {i: cases[i] for i in wanted}
    if not cases:
        raise InputError(where(root, "no ID.nii.gz + ID_label.nii.gz pairs found"))
    return list(cases.values())


def _split_ids(split_file: str | os.PathLike, split: str | None) -> list[str]:
    path = Path(split_file)
    if not path.exists():
        raise InputError(where(path, "split file not found"))
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"sequence", "split"} <= set(rows[0]):
        raise InputError(where(path, "split file needs the columns 'sequence,split'"))
    ids = [r["sequence"] for r in rows if split is None or r["split"] == split]
    if not ids:
        raise InputError(where(path, f"no sequences in split {split!r}"))
    return ids


def loop_indices(num_frames: int, length: int) -> np.ndarray:
    """Frame order of a cine played forwards, backwards, forwards… until ``length`` frames (``0, 1, …, T−1, T−2, …``)."""
    if num_frames < 2:
        return np.zeros(max(length, num_frames), int)
    period = list(range(num_frames)) + list(range(num_frames - 2, 0, -1))
    return np.array([period[i % len(period)] for i in range(max(length, num_frames))])


def looped(cine: Cine, truth: np.ndarray, length: int) -> tuple[Cine, np.ndarray]:
    """A long clip made by looping ``cine`` forwards and backwards (see :func:`loop_indices`)."""
    order = loop_indices(cine.num_frames, length)
    return (Cine(cine.frames[:, :, order], cine.spacing, f"{cine.name}_loop{len(order)}", cine.slice_index),
            np.ascontiguousarray(truth[:, :, order]))


def quarter_dice(scores: dict, num_frames: int) -> list[float]:
    """Mean per-frame Dice (over labels and frames) in each quarter of the clip: drift shows as a falling curve."""
    out = []
    for q in range(4):
        lo, hi = q * num_frames / 4, (q + 1) * num_frames / 4
        values = [d for s in scores.values() for t, d in zip(s["frames"], s["per_frame_dice"]) if lo <= t < hi]
        out.append(round(float(np.mean(values)), 4) if values else float("nan"))
    return out


def evaluate(cases: Sequence[Case], propagator: Propagator, strategy: str = "first", shots: int = 1,
             overlays: str | os.PathLike | None = None, slice_index: int | None = None,
             labels: Iterable[int] | None = None, progress: bool = True, loop: int | None = None) -> dict:
    """Propagate and score every case; return the report dict (see the module docstring).

    ``loop``: play each cine forwards and backwards until it has at least this many frames (a long
    clip whose content repeats, so a method that does not drift keeps its Dice to the end).
    """
    per_sequence = []
    total_frames, total_seconds = 0, 0.0
    bar = tqdm(cases, desc=f"evaluate {propagator.name}", unit="cine", disable=not progress, file=sys.stderr)
    for case in bar:
        _, pairs = load_labelled_cine(case.image, case.label, slice_index)
        for cine, truth in pairs:
            if loop:
                cine, truth = looped(cine, truth, loop)
            support = select_support(truth, strategy, shots, labels)
            result = propagator.propagate(cine, support)
            total_frames += cine.num_frames
            total_seconds += result.seconds
            scores = {label: score_label(result.labels == label, truth == label, query_frames(support, label),
                                         cine.spacing)
                      for label in support.labels}
            per_sequence.append({
                "id": cine.name, "frames": cine.num_frames, "seconds": round(result.seconds, 4),
                "support_frames": {str(k): support.frames_of(k) for k in support.labels},
                "confidence": [round(float(c), 4) for c in result.confidence],
                "flagged": result.flagged(),
                "quarter_dice": quarter_dice(scores, cine.num_frames),
                "labels": {str(k): v for k, v in scores.items()},
            })
            if "relearn" in result.details:  # what test-time relearning did on this cine
                per_sequence[-1]["relearn"] = result.details["relearn"]
            if overlays is not None:
                _save_overlay(Path(overlays), cine, result.labels, truth, support.frames, propagator.name, scores)
            bar.set_postfix(dice=f"{np.nanmean([s['dice'] for s in scores.values()]):.3f}")
    mean_dice, per_label = summarise(per_sequence)
    return {
        # does the per-frame confidence flag the frames that need review? (see metrics.flagging_summary)
        "flagging": flagging_summary(per_sequence),
        "loop": loop,
        "quarter_dice": [round(float(np.nanmean(q)), 4) if np.isfinite(q).any() else None
                         for q in np.array([s["quarter_dice"] for s in per_sequence], float).T],
        "method": propagator.name,
        "support": strategy,
        "shots": shots,
        "mean_dice": mean_dice,
        "per_label": per_label,
        "sequences": len(per_sequence),
        "frames": total_frames,
        "frames_per_second": total_frames / total_seconds if total_seconds > 0 else float("inf"),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "per_sequence": per_sequence,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "date": datetime.datetime.now().isoformat(timespec="seconds")},
    }


def _save_overlay(folder: Path, cine, prediction, truth, support_frames, method: str, scores: dict) -> None:
    from cineprop.viz import overlay_frames, save_strip  # OpenCV drawing only when asked for

    dice_text = "  ".join(f"L{k} {v['dice']:.2f}" for k, v in scores.items())
    save_strip(folder / f"{cine.name}.png", overlay_frames(cine.frames, prediction, truth, support_frames),
               title=f"{cine.name}  {method}  Dice {dice_text}  (white: truth, colour: prediction, S: support)")


def format_table(report: dict) -> str:
    """A short human-readable summary of a report."""
    lines = [
        f"method {report['method']} | support {report['support']} x{report['shots']} | "
        f"{report['sequences']} cines, {report['frames']} frames | {report['frames_per_second']:.1f} frames/s | "
        f"peak {report['peak_memory_mb']:.0f} MB",
        f"{'label':>6} {'dice':>7} {'iou':>7} {'hd95mm':>8} {'stability':>10} {'cines':>6}",
    ]
    for label, s in report["per_label"].items():
        lines.append(f"{label:>6} {s['dice']:7.3f} {s['iou']:7.3f} {s['hd95']:8.2f} {s['stability']:10.2f} "
                     f"{s['sequences']:6d}")
    lines.append(f"{'mean':>6} {report['mean_dice']:7.3f}")
    if report.get("loop"):
        lines.append(f"looped to >= {report['loop']} frames; Dice by quarter of the clip: "
                     + " ".join("n/a" if q is None else f"{q:.3f}" for q in report["quarter_dice"]))
    flag = report.get("flagging")
    if flag and flag["query_frames"]:
        recall = "n/a" if not flag["bad_frames"] else f"{flag['recall_bad_frames']:.2f}"
        lines.append(f"flags: {flag['flagged_frames']}/{flag['query_frames']} query frames "
                     f"(rate {flag['flag_rate']:.2f}); recall of frames with Dice < {flag['bad_dice']}: {recall} "
                     f"({flag['flagged_bad_frames']}/{flag['bad_frames']})")
    return "\n".join(lines)


def format_comparison(reports: Sequence[dict]) -> str:
    """One row per method: mean Dice, per-label Dice and speed, from reports of the same run."""
    labels = sorted({k for r in reports for k in r["per_label"]}, key=int)
    head = f"{'method':>8} {'mean':>7} " + " ".join(f"{'L' + k:>7}" for k in labels) + f" {'frames/s':>9}"
    rows = [head]
    for r in reports:
        cells = " ".join(f"{r['per_label'].get(k, {}).get('dice', float('nan')):7.3f}" for k in labels)
        rows.append(f"{r['method']:>8} {r['mean_dice']:7.3f} {cells} {r['frames_per_second']:9.1f}")
    return "\n".join(rows)


def write_report(report: dict, path: str | os.PathLike) -> None:
    """Write the report as strict JSON (NaN and infinity become ``null``), atomically."""
    atomic_write_text(path, json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")


def jsonable(value):
    """Numpy scalars to Python, NaN/inf to ``None``, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
