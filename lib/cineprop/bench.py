"""``cineprop bench``: propagation speed and peak memory, measured on one machine in one run.

Speed is reported as frames/s per method *and* as a ratio to the ``flow`` baseline measured in the
same run, so numbers from different machines compare. Peak memory is the resident-set peak of a
fresh process that propagates a long cine (default 300 frames), so earlier work cannot hide it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from typing import Any

import numpy as np

from cineprop.io.cine import Cine
from cineprop.methods import build_propagator, method_options
from cineprop.support import select_support
from cineprop.synthetic import moving_shapes


def synthetic_cine(size: int, frames: int, labels: int, seed: int = 0) -> tuple[Cine, np.ndarray]:
    """A ``size × size × frames`` moving-shapes cine (the benchmark's input) and its labels."""
    image, truth = moving_shapes(size, size, frames, labels=labels, seed=seed, speed=0.5)
    return Cine(image, name=f"synthetic{size}x{frames}"), truth


def time_method(name: str, cine: Cine, truth: np.ndarray, repeat: int, options: Any = None) -> dict:
    """Median wall time of ``repeat`` propagations from the middle frame (after one warm-up run).

    ``options``: the method's options object (:func:`~cineprop.methods.method_options`), ``None``: defaults.
    """
    propagator = build_propagator(name, options)
    support = select_support(truth, "middle")
    propagator.propagate(cine, support)  # warm-up (lazy imports, allocator, thread pools)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        propagator.propagate(cine, support)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"method": name, "seconds": seconds, "frames_per_second": cine.num_frames / seconds, "runs": times}


def _peak_child(name: str, size: int, frames: int, labels: int, options: Any, queue) -> None:
    cine, truth = synthetic_cine(size, frames, labels)
    start = time.perf_counter()
    build_propagator(name, options).propagate(cine, select_support(truth, "middle"))
    queue.put({"seconds": time.perf_counter() - start,
               "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})


def peak_memory(name: str, size: int, frames: int, labels: int, options: Any = None) -> dict:
    """Propagate a ``frames``-long cine in a fresh process; return its peak RSS (MB) and time."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(name, size, frames, labels, options, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return dict(result, frames=frames)


def run_bench(methods: list[str], size: int = 256, frames: int = 60, labels: int = 3, repeat: int = 3,
              long_frames: int = 300, options: dict | None = None) -> dict:
    """Time each method on one synthetic cine; ``options``: settings by name, each method taking its own."""
    cine, truth = synthetic_cine(size, frames, labels)
    rows = []
    for name in methods:
        opts = method_options(name, options, ignore_unknown=True)
        row = time_method(name, cine, truth, repeat, opts)
        if long_frames:
            row["long_clip"] = peak_memory(name, size, long_frames, labels, opts)
        rows.append(row)
    flow = next((r for r in rows if r["method"] == "flow"), None)
    for r in rows:
        r["speed_ratio_to_flow"] = r["frames_per_second"] / flow["frames_per_second"] if flow else None
    return {"size": size, "frames": frames, "labels": labels, "repeat": repeat, "results": rows,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()}}


def format_bench(report: dict) -> str:
    lines = [f"{report['size']}x{report['size']} x {report['frames']} frames, {report['labels']} labels, "
             f"{report['machine']['cpus']} CPUs (median of {report['repeat']})",
             f"{'method':>8} {'frames/s':>9} {'x flow':>7} {'long clip':>10} {'peak MB':>8}"]
    for r in report["results"]:
        long = r.get("long_clip") or {}
        ratio = f"{r['speed_ratio_to_flow']:.2f}" if r["speed_ratio_to_flow"] is not None else "-"
        lines.append(f"{r['method']:>8} {r['frames_per_second']:9.1f} {ratio:>7} "
                     f"{str(long.get('frames', '-')) + ' fr':>10} {long.get('peak_memory_mb', float('nan')):8.0f}")
    return "\n".join(lines)
