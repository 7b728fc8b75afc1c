"""``cineprop convert INPUT OUTPUT.nii.gz``: DICOM, video files and frame folders to NIfTI with geometry."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a DICOM cine, video file or frame folder to NIfTI/NRRD",
        description="Read INPUT (a DICOM multi-frame file, a folder with one DICOM cine series, a video file "
                    "such as mp4/avi, a folder of png/jpg frames, or a NIfTI/NRRD volume), convert it to grey "
                    "float32 with its geometry and write OUTPUT atomically. See docs/inputs.md.")
    p.add_argument("input", help="file or folder to convert")
    p.add_argument("output", help="output volume (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--slice", type=int, default=None,
                   help="4D inputs (several slice positions): write only this position, as a 3D cine")
    p.add_argument("--crop", default=None, metavar="auto|y0:y1,x0:x1",
                   help="keep only the image region: 'auto' = bounding box of the part that moves over time "
                        "(drops static borders and burned-in text), or rows y0:y1 and columns x0:x1 in pixels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.io.ingest import convert

    result, written = convert(args.input, args.output, slice_index=args.slice, crop=args.crop)
    g = written.geometry
    shape = "×".join(map(str, written.shape))
    spacing = ", ".join(f"{s:g}" for s in g.spacing)
    crop = f"; cropped to rows,columns {result.crop}" if result.crop else ""
    chosen = f"; slice position {args.slice}" if args.slice is not None and written.array.ndim == 3 \
        and result.volume.array.ndim == 4 else ""
    print(f"{args.input}: {result.description}{crop}{chosen} -> {args.output}: {shape} "
          f"(spacing {spacing}; origin {', '.join(f'{o:.4g}' for o in g.origin)})")
    return 0
