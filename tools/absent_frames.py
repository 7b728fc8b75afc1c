"""How much of a report's Dice is lost on query frames where the structure is absent from the truth.

    python tools/absent_frames.py REPORT.json [REPORT.json ...] --data ../shared/data/acdc/sequences

Reads ``cineprop evaluate --out`` reports (one method each, or the ``reports`` list of a multi-method
run) and the truth labels (``ID_label.nii.gz`` in ``--data``). Per method: the query label-frames,
the share whose truth has no pixel of the label (the structure left the frame: slices past the base
or the apex of a stack, or before the first slice it appears on with first-frame support), the mean
Dice on those frames and on the others, and the mean over label-frames now and with an exact
absence decision (an empty prediction there is not scored, as ``cineprop.metrics.score_label``
does: the mean over the other frames). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cineprop.io import read_label


def _reports(path: str) -> list[dict]:
    data = json.load(open(path))
    return data["reports"] if "reports" in data else [data]


def absent_summary(report: dict, data: Path) -> dict:
    """``{"frames", "absent", "dice_absent", "dice_present", "mean"}`` over the report's scored query
    label-frames (absent ones are scored only where the method predicted the label)."""
    absent, present = [], []
    for sequence in report["per_sequence"]:
        truth = read_label(data / f"{sequence['id']}_label.nii.gz").array
        for label, scores in sequence["labels"].items():
            for frame, score in zip(scores["frames"], scores["per_frame_dice"]):
                (present if (truth[:, :, frame] == int(label)).any() else absent).append(score)
    every = absent + present
    return {"frames": len(every), "absent": len(absent) / len(every),
            "dice_absent": float(np.mean(absent)) if absent else float("nan"),
            "dice_present": float(np.mean(present)), "mean": float(np.mean(every))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--data", required=True, help="folder with the ID_label.nii.gz truth of the reports")
    args = parser.parse_args()
    print("| report | method | query label-frames | structure absent | Dice there | Dice elsewhere "
          "| mean over label-frames | with exact absence |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.reports:
        for report in _reports(path):
            s = absent_summary(report, Path(args.data))
            print(f"| {Path(path).name} | {report['method']} | {s['frames']} | {100 * s['absent']:.1f} % "
                  f"| {s['dice_absent']:.3f} | {s['dice_present']:.3f} | {s['mean']:.3f} | {s['dice_present']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
