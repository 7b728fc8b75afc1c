"""Markdown rows from ``cineprop evaluate --out`` reports (how docs/benchmarks.md tables are made).

    python tools/report_table.py runs/eval/final/first1.json runs/eval/final/middle1.json ...

One row per (report, method): method, support, shots, sequences, mean Dice, Dice per label, HD95 per
label, stability per label, frames/s and seconds per frame, and the flagging numbers (flag rate,
recall of bad frames).
"""

from __future__ import annotations

import json
import sys


def reports(path: str) -> list[dict]:
    data = json.load(open(path))
    return data["reports"] if "reports" in data else [data]


def row(report: dict, options: str = "") -> str:
    labels = sorted(report["per_label"], key=int)
    per = lambda key, fmt: " / ".join(format(report["per_label"][k][key], fmt) for k in labels)  # noqa: E731
    flags = report.get("flagging") or {}
    flagging = (f"{flags['flag_rate']:.2f} / {flags['recall_bad_frames']:.2f}"
                if flags.get("query_frames") and flags.get("bad_frames") else "—")
    return (f"| {report['method']}{options} | {report['support']} | {report['shots']} | {report['sequences']} | "
            f"**{report['mean_dice']:.3f}** | {per('dice', '.3f')} | {per('hd95', '.1f')} | {per('stability', '.2f')} | "
            f"{report['frames_per_second']:.1f} | {1.0 / report['frames_per_second']:.3f} | {flagging} |")


HEADER = ("| method | support | shots | cines | mean Dice | Dice per label | HD95 mm per label | stability per label "
          "| frames/s | s/frame | flag rate / recall |\n|---|---|---|---|---|---|---|---|---|---|---|")

if __name__ == "__main__":
    print(HEADER)
    for path in sys.argv[1:]:
        for report in reports(path):
            words = report.get("command", "").split()
            options = "".join(f" `{words[i + 1]}`" for i, w in enumerate(words[:-1]) if w == "--option")
            print(row(report, options))
