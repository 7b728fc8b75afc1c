"""How long a radiologist waits per "Propagate" in Slicer, and how much of it is the client's part.

For each bundled sample cine, as a *local* cine (uploaded once as a session): one first propagation
(includes the upload), then ``--repeats`` re-propagations. Reports the median wall time of
``CineWorkflow.propagate`` (write the support, HTTP, read the result) against the server's own
``latencies.total``, measured in the same run. Usage, with a server running::

    PYTHONPATH=$PWD/lib .venv/bin/python bench/bench_slicer_client.py --server http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "slicer_extension" / "CineProp"))

from CinePropLib.conversions import CineArrays  # noqa: E402
from CinePropLib.workflow import CineWorkflow  # noqa: E402
from CinePropLib.segments import SegmentSpec  # noqa: E402
from CinePropLib.volumefiles import read_volume  # noqa: E402

SEGMENTS = [SegmentSpec("RV", (0.3, 0.5, 0.9), 1), SegmentSpec("myocardium", (0.3, 0.7, 0.4), 2),
            SegmentSpec("LV", (0.9, 0.3, 0.2), 3)]


def bench(server: str, repeats: int) -> list[dict]:
    rows = []
    for image in sorted((REPO / "data" / "sample").glob("*_frame01.nii.gz")):
        frames, grid = read_volume(image)
        truth, _ = read_volume(image.with_name(image.name.replace(".nii.gz", "_label.nii.gz")))
        painted = np.zeros_like(truth)
        middle = frames.shape[2] // 2
        painted[..., middle] = truth[..., middle]
        workflow = CineWorkflow()
        workflow.connect(server)
        cine = CineArrays(frames, grid, image.name.split(".")[0] + "_bench")
        start = time.perf_counter()
        first = workflow.propagate(cine, painted, SEGMENTS)
        first_wall = time.perf_counter() - start
        walls, servers = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            result = workflow.propagate(cine, painted, SEGMENTS)
            walls.append(time.perf_counter() - start)
            servers.append(result.seconds or float("nan"))
        rows.append({"cine": image.name.split(".")[0], "shape": "×".join(map(str, frames.shape)),
                     "first": first_wall, "first_server": first.seconds or float("nan"),
                     "wall": statistics.median(walls), "server": statistics.median(servers)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = bench(args.server, args.repeats)
    print(f"server {args.server}, {args.repeats} repeats (medians)\n")
    print("| cine (I×J×T) | first propagate incl. upload (s) | re-propagate, wall (s) | server total (s) "
          "| wall / server |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cine']} ({r['shape']}) | {r['first']:.2f} | {r['wall']:.2f} | {r['server']:.2f} "
              f"| {r['wall'] / r['server']:.2f} |")


if __name__ == "__main__":
    main()
