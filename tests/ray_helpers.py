"""Helpers for the tests that start a real local Ray instance."""

from __future__ import annotations

import psutil


def ray_processes() -> list[psutil.Process]:
    """Ray processes started by this test process (raylet, GCS, workers, agents)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "ray/_private" in cmd:
            found.append(p)
    return found
