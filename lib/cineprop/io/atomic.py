"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader (a MONAI Label server, a second process, a user) never sees a half-written label,
checkpoint or converted image: either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _suffix(name: str) -> str:
    """All suffixes of a name (``x.nii.gz`` → ``.nii.gz``), so writers pick the right format."""
    parts = name.split(".")
    return "." + ".".join(parts[1:]) if len(parts) > 1 else ""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    The temporary name keeps the target's suffixes. On any exception the temporary file is removed
    and ``path`` is left as it was. The new file keeps the mode of the file it replaces (``0o644``
    for a new file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.", suffix=".tmp" + _suffix(target.name),
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file owner-only; give it the target's mode, or the usual rw-r--r--
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
