"""Time ``cineprop convert`` on clinical-size inputs of every kind (written here with the test factory).

Usage (from the repository root):

    PYTHONPATH=$PWD/lib .venv/bin/python bench/bench_inputs.py [--repeats 3]

Prints a Markdown table: input, size on disk, output shape, median wall time of
:func:`cineprop.io.convert` (read + checks + atomic NIfTI write) and frames per second. The inputs
are synthetic (moving speckle in an ultrasound-like sector), built once in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the small-file factory the tests use

import numpy as np  # noqa: E402
from inputs_factory import (mr_series_frames, ultrasound_clip, write_mr_series, write_multiframe,  # noqa: E402
                            write_png_folder, write_video)

from cineprop.io import convert  # noqa: E402


def _size(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def build(folder: Path) -> list[tuple[str, Path, str | None]]:
    """The benchmark inputs: (label, path, crop)."""
    echo, _ = ultrasound_clip(t=60, rows=480, cols=640, seed=1)
    series = mr_series_frames(z=8, t=25, rows=256, cols=208, seed=2)
    inputs = [
        ("DICOM US multi-frame, YBR colour, 640×480×60", write_multiframe(folder / "echo.dcm", echo,
                                                                           colour="YBR_FULL"), None),
        ("DICOM MR cine series, 8 positions × 25 frames, 208×256 (200 files)",
         write_mr_series(folder / "sax", series)[0][0].parent, None),
        ("mp4 (h264), 640×480×60", write_video(folder / "echo.mp4", echo, fps=30), None),
        ("mp4 (h264), 640×480×60, --crop auto", folder / "echo.mp4", "auto"),
        ("PNG folder, 640×480×60", write_png_folder(folder / "frames", echo, [f"f{k}.png" for k in range(60)]),
         None),
    ]
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cineprop-bench-") as tmp:
        folder = Path(tmp)
        print("| input | on disk (MiB) | output (I×J×…×T) | convert, median (s) | frames/s |")
        print("|---|---|---|---|---|")
        for label, path, crop in build(folder):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                _, written = convert(path, folder / "out.nii.gz", crop=crop)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            frames = int(np.prod(written.shape[2:]))
            print(f"| {label} | {_size(path):.1f} | {'×'.join(map(str, written.shape))} | {seconds:.2f} | "
                  f"{frames / seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
