"""Torch's CPU thread count for inference (shared by every propagator that runs a model)."""

from __future__ import annotations

import os

import torch


def configure_threads(device: str) -> None:
    """Use every core this process may run on for CPU inference (torch defaults to the physical cores).

    An explicit ``OMP_NUM_THREADS`` wins (e.g. on a machine shared with a training job, where more
    threads than free cores make every step many times slower).
    """
    if device != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() < cores:
        torch.set_num_threads(cores)
