"""``.zip`` archives of a DICOM series or a frame folder (how a folder travels through one HTTP upload).

:func:`extracted` unpacks an archive into a temporary folder that is removed afterwards, after
checking every member from the archive's directory, before writing anything: no absolute paths,
no ``..``, no links, at most :data:`MAX_MEMBERS` files and :data:`MAX_UNPACKED` bytes in total
(a small archive cannot expand into a disk-filling one), and no member whose declared size is
exceeded while unpacking.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from cineprop.errors import InputError, where
from cineprop.io.volume import MAX_FRAMES, MAX_VOXELS

#: Most files in an archive (a DICOM series has one file per frame and slice position).
MAX_MEMBERS = MAX_FRAMES
#: Most bytes an archive may unpack to: 16-bit samples of the largest accepted volume, plus headers.
MAX_UNPACKED = 2 * MAX_VOXELS + 256 * 1024 * 1024
ARCHIVE_SUFFIXES = (".zip",)


def _safe_members(archive: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise InputError(where(path, f"archive holds {len(members)} files, more than the limit of {MAX_MEMBERS}"))
    total = 0
    for m in members:
        name = PurePosixPath(m.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or (m.filename[1:2] == ":"):
            raise InputError(where(path, f"archive member {m.filename!r} points outside the archive"))
        if stat.S_ISLNK(m.external_attr >> 16):
            raise InputError(where(path, f"archive member {m.filename!r} is a link; links are not accepted"))
        total += m.file_size
    if total > MAX_UNPACKED:
        raise InputError(where(path, f"archive unpacks to {total / 2**20:.0f} MiB, more than the limit of "
                                     f"{MAX_UNPACKED / 2**20:.0f} MiB"))
    return members


@contextlib.contextmanager
def extracted(path: str | os.PathLike) -> Iterator[Path]:
    """Unpack a ``.zip`` into a temporary folder and yield the folder holding the cine.

    That folder is the archive's single top-level folder when everything sits inside one (as when
    a folder is zipped), else the archive's root. Removed on exit.

    Raises:
        InputError: not a readable zip archive, or a member that breaks a rule of the module docstring.
    """
    p = Path(path)
    try:
        archive = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(where(p, f"not a readable zip archive ({exc})")) from None
    with archive, tempfile.TemporaryDirectory(prefix="cineprop-zip-") as tmp:
        root = Path(tmp)
        try:
            for m in _safe_members(archive, p):
                target = root.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as src, open(target, "wb") as dst:
                    written = 0
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > m.file_size:
                            raise InputError(where(p, f"archive member {m.filename!r} unpacks past its declared size"))
                        dst.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(where(p, f"archive is corrupt or truncated ({type(exc).__name__}: {exc})")) from None
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        yield entries[0] if len(entries) == 1 and entries[0].is_dir() else root
