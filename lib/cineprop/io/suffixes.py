"""File endings cineprop reads, in one place (volumes, DICOM, video, zip archives; each kind's list
lives with its reader, DICOM's here).

A leaf module: :mod:`cineprop.io.cine` names cines after their files (:func:`~cineprop.io.cine.stem`) and
:mod:`cineprop.io.ingest` chooses a reader by the ending, so both import these without importing each other.
"""

from __future__ import annotations

from cineprop.io.archive import ARCHIVE_SUFFIXES
from cineprop.io.video import VIDEO_SUFFIXES
from cineprop.io.volume import VOLUME_SUFFIXES

#: DICOM files by name (DICOM files without an ending are recognised by content).
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Every file ending :func:`cineprop.io.ingest.ingest` recognises by name.
INPUT_SUFFIXES = VOLUME_SUFFIXES + DICOM_SUFFIXES + VIDEO_SUFFIXES + ARCHIVE_SUFFIXES
