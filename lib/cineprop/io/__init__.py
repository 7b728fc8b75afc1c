"""Cine and label I/O with exact geometry round trips (see :mod:`cineprop.io.volume`).

Clinical inputs (DICOM, video files, frame folders) are read by :mod:`cineprop.io.ingest`.
"""

from cineprop.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from cineprop.io.cine import (
    Cine,
    assemble_labels,
    cines_from_volume,
    labels_for,
    slice_positions,
    stem,
)
from cineprop.io.crop import CropBox, parse_crop
from cineprop.io.ingest import Ingested, convert, ingest, input_kind, load_cines, load_labelled_cine, read_any
from cineprop.io.suffixes import INPUT_SUFFIXES
from cineprop.io.volume import (
    MAX_FRAMES,
    MAX_LABEL,
    MAX_SIDE,
    MAX_VOXELS,
    Geometry,
    Volume,
    VolumeHeader,
    as_label_array,
    read_image,
    read_label,
    read_volume_header,
    write_image,
    write_label,
)

__all__ = [
    "INPUT_SUFFIXES", "CropBox", "Ingested", "convert", "ingest", "input_kind", "parse_crop", "read_any",
    "MAX_FRAMES", "MAX_LABEL", "MAX_SIDE", "MAX_VOXELS", "Cine", "Geometry", "Volume", "VolumeHeader",
    "as_label_array", "assemble_labels", "atomic_path", "atomic_write_bytes", "atomic_write_text",
    "cines_from_volume", "labels_for", "load_cines", "load_labelled_cine", "read_image", "read_label",
    "read_volume_header", "slice_positions", "stem", "write_image", "write_label",
]
