"""Check an untrusted input within limits: decompressed size first, then time and memory in a child process.

A server must not let one upload hold it: a 1 MB ``.nii.gz`` can declare a gigabyte of voxels, a
0.7 MB ``.zip`` can hold 700 MiB of zeros that a DICOM parser chews on for minutes. :func:`check_input`
refuses an input whose *declared* decompressed size (volume header, archive directory) is over a
limit before reading any pixel, then reads and converts it in a child process (multiprocessing
``forkserver``: a clean process that never inherits the server's threads or locks) that is killed
when it runs past ``seconds`` and whose address space may grow by at most ``memory_mb``. Any limit
passed raises :class:`LimitExceeded` (an :class:`~cineprop.errors.InputError` whose ``resource`` is
``"size"``, ``"time"`` or ``"memory"``); a bad input raises the reader's own ``InputError``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from cineprop.errors import CinepropError, InputError, where

#: Modules the forkserver imports once, so each check starts in milliseconds.
_PRELOAD = ["cineprop.io"]


class LimitExceeded(InputError):
    """An input that passes a size, time or memory limit (``resource``)."""

    def __init__(self, message: str, resource: str):
        super().__init__(message)
        self.resource = resource


@dataclass(frozen=True)
class Limits:
    """Bounds on checking one input. ``None`` or 0 disables a bound."""

    max_mb: float | None = 512.0  # declared decompressed size (float32 voxels, or archive contents)
    seconds: float | None = 60.0  # wall time of reading and converting
    memory_mb: float | None = 4096.0  # growth of the checking process's address space


def declared_bytes(path: str | os.PathLike, kind: str) -> int | None:
    """What ``path`` decompresses to, from headers only: float32 voxels of a volume, members of a ``.zip``.

    ``None`` for kinds whose size is only known by decoding (DICOM, video, frames): the time and
    memory limits bound those.
    """
    p = Path(path)
    if kind == "volume":
        from cineprop.io.volume import read_volume_header

        try:
            header = read_volume_header(p)
        except InputError:
            return None  # unreadable: the reader itself says so
        voxels = 1
        for side in header.size:
            voxels *= side
        return voxels * max(header.components, 1) * 4
    if kind == "archive":
        try:
            with zipfile.ZipFile(p) as archive:
                return sum(m.file_size for m in archive.infolist())
        except (zipfile.BadZipFile, OSError):
            return None
    return None


def check_input(path: str | os.PathLike, output: str | os.PathLike, stored_suffixes: tuple[str, ...],
                limits: Limits) -> tuple[str, str]:
    """Check an input and convert it when needed, within ``limits``; returns ``(file to store, kind)``.

    A volume whose name ends with one of ``stored_suffixes`` is checked and stored as it is (the
    first item is ``path``); anything else is converted to ``output`` (a NIfTI/NRRD path).

    Raises:
        LimitExceeded: over a limit (nothing is left at ``output``).
        InputError: not a valid cine.
    """
    from cineprop.io.ingest import input_kind

    kind = input_kind(path)
    size = declared_bytes(path, kind) if limits.max_mb else None
    if size is not None and size > limits.max_mb * 2**20:
        raise LimitExceeded(where(path, f"decompresses to {size / 2**20:.0f} MiB, more than this server's limit of "
                                        f"{limits.max_mb:g} MiB"), "size")
    if not limits.seconds and not limits.memory_mb:
        return _check(str(path), str(output), tuple(stored_suffixes))
    return run_limited(_check, (str(path), str(output), tuple(stored_suffixes)), limits, what=where(path, "reading"))


def _check(path: str, output: str, stored_suffixes: tuple[str, ...]) -> tuple[str, str]:
    from cineprop.io.cine import cines_from_volume
    from cineprop.io.ingest import convert, input_kind
    from cineprop.io.volume import read_image

    kind = input_kind(path)
    if kind == "volume" and os.path.basename(path).lower().endswith(stored_suffixes):
        cines_from_volume(read_image(path))  # ≥ 2 frames, ≥ 4 px, finite, within size limits
        return path, kind
    convert(path, output)
    return output, kind


def run_limited(func: Callable, args: tuple, limits: Limits, what: str = "the check") -> Any:
    """``func(*args)`` in a forkserver child with ``limits.seconds`` and ``limits.memory_mb``.

    ``func`` must be a module-level function of an importable module (it is sent by name).
    Errors of :mod:`cineprop.errors` come back as the same type and message.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    receive, send = context.Pipe(duplex=False)
    scratch = tempfile.mkdtemp(prefix="cineprop-check-")  # the child's temporary files: removed even if it is killed
    process = context.Process(target=_child, args=(send, func, args, limits.memory_mb, scratch), daemon=True)
    with _no_main_module():
        process.start()
    send.close()
    try:
        if not receive.poll(limits.seconds or None):
            raise LimitExceeded(f"{what} took longer than this server's limit of {limits.seconds:g} s", "time")
        try:
            status, value = receive.recv()
        except EOFError:  # died without answering
            status, value = "died", None
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join()
        shutil.rmtree(scratch, ignore_errors=True)
    if status == "died":  # a signal: the OOM killer, or an abort on a failed allocation in native code
        if (process.exitcode or 0) >= 0:
            raise InputError(f"{what} failed (the checking process exited with {process.exitcode})")
        status = "memory"
    if status == "ok":
        return value
    if status == "memory":
        raise LimitExceeded(f"{what} needs more memory than this server's limit of {limits.memory_mb:g} MiB", "memory")
    error_type, message = value
    raise (error_type if isinstance(error_type, type) and issubclass(error_type, CinepropError) else InputError)(message)


@contextlib.contextmanager
def _no_main_module() -> Iterator[None]:
    """Start children without re-running the parent's ``__main__`` (``python -m monailabel.main`` or a script).

    multiprocessing re-imports the main module in every spawned or forkserver child; a module with no
    ``__spec__`` and no ``__file__`` in its place while the child starts makes it skip that step.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _child(send, func: Callable, args: tuple, memory_mb: float | None, scratch: str) -> None:
    tempfile.tempdir = scratch
    if memory_mb:
        _limit_address_space(memory_mb)
    try:
        result = ("ok", func(*args))
    except MemoryError:
        result = ("memory", None)
    except CinepropError as exc:
        result = ("error", (type(exc), str(exc)))
    except Exception as exc:  # noqa: BLE001 - a reader failing on hostile bytes: report, never crash the server
        result = ("error", (InputError, f"{type(exc).__name__}: {exc}"))
    send.send(result)
    send.close()


def _limit_address_space(memory_mb: float) -> None:
    """Let this process's address space grow by ``memory_mb`` from now (Linux; elsewhere no limit)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return
    limit = current + int(memory_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
