"""What the security tests check after each attack: files outside the studies folder and temporary files.

:class:`Snapshot` records, for a server of ``tests/servers.py`` whose ``TMPDIR`` is
``studies.parent / "tmp"`` (as ``cineprop_server`` and the security servers are started), every
file under the studies folder's parent (the server's working directory) that is neither in the
studies folder nor the server log, every file in its temporary folder, and the studies folder's
files with their sizes and modification times.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

#: Entries of the temporary folder that are the server's own state, not leftovers: multiprocessing's
#: socket folder (``pymp-*``, removed at exit) and MONAI Label's log configuration (written at start).
SERVER_STATE = ("pymp-",)


def _files(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and not any(path == s or s in path.parents for s in skip):
            found.add(str(path.relative_to(root)))
    return found


class Snapshot:
    """Files around a running server now; :meth:`assert_nothing_outside` compares with later."""

    def __init__(self, server):
        self.server = server
        self.root = server.studies.parent
        self.tmp = self.root / "tmp"
        self.outside = self._outside()
        self.temporary = self._temporary()

    def _outside(self) -> set[str]:
        return _files(self.root, (self.server.studies, self.tmp, Path(self.server.log_path)))

    def _temporary(self) -> set[str]:
        return {f for f in _files(self.tmp) if not f.startswith(SERVER_STATE)} if self.tmp.is_dir() else set()

    def studies(self) -> dict[str, tuple[int, int]]:
        """``{relative path: (size, mtime_ns)}`` of the studies folder (the index file left out)."""
        return {str(p.relative_to(self.server.studies)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in self.server.studies.rglob("*")
                if p.is_file() and not p.name.startswith(("datastore_v2.json", ".")) and ".cineprop" not in str(p)}

    def assert_nothing_outside(self, settle: float = 5.0) -> None:
        """Nothing new outside; nothing new left in the temporary folder once ``settle`` seconds have
        passed (MONAI Label removes a result file in a background task that runs after the response)."""
        deadline = time.monotonic() + settle
        while (left := self._temporary() - self.temporary) and time.monotonic() < deadline:
            time.sleep(0.2)
        new_outside = self._outside() - self.outside
        assert not new_outside, f"written outside the studies and temporary folders: {sorted(new_outside)}"
        assert not left, f"left in the server's temporary folder: {sorted(left)}"


def zip_of_zeros(path: Path, member: str, mib: int) -> Path:
    """A ``.zip`` holding one member of ``mib`` MiB of zeros (a few hundred KiB on disk per 100 MiB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(member, "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(mib):
                f.write(block)
    return path
