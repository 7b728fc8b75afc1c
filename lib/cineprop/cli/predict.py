"""``cineprop predict IMAGE --support LABEL --out OUT``: propagate painted frames through a cine file."""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_method_arguments, method_options


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="propagate painted support frames through a cine",
                       description="Segment every frame of IMAGE from the frames painted in the support label "
                                   "volume (same shape; frames with any non-zero label are support frames).")
    p.add_argument("image", help="cine: NIfTI/NRRD (H×W×T or H×W×Z×T), or any input 'cineprop convert' reads "
                                 "(DICOM file or series folder, video file, frame folder)")
    p.add_argument("--support", required=True, help="label volume with the painted frames")
    p.add_argument("--frames", type=int, nargs="+", help="use only these frames of the support volume")
    p.add_argument("--slice", type=int, default=None, help="4D inputs: only this slice position")
    p.add_argument("--out", required=True, help="output label volume (same geometry as IMAGE, uint8)")
    p.add_argument("--confidence", default=None, help="also write per-frame confidence as JSON here")
    add_method_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from cineprop.io import assemble_labels, atomic_write_text, labels_for, load_cines, read_label, write_label
    from cineprop.methods import build_propagator
    from cineprop.support import SupportSet

    volume, cines = load_cines(args.image, args.slice)
    painted = read_label(args.support, like=volume)
    propagator = build_propagator(args.method, **method_options(args))
    results, summary = [], []
    for cine in cines:
        labels = labels_for(painted, cine)
        if not labels.any() and len(cines) > 1:
            continue  # 4D: slice positions nobody painted stay empty
        result = propagator.propagate(cine, SupportSet.from_labels(labels, args.frames))
        results.append((cine, result.labels))
        summary.append({"cine": cine.name, "support_frames": result.support_frames,
                        "confidence": [round(float(c), 4) for c in result.confidence],
                        "flagged": result.flagged(), "seconds": round(result.seconds, 3)})
        print(f"{cine.name}: {cine.num_frames} frames from support {result.support_frames} in "
              f"{result.seconds:.2f} s; flagged {result.flagged() or 'none'}")
    if not results:
        from cineprop.errors import SupportError
        raise SupportError(f"{args.support}: no slice position has painted frames")
    write_label(args.out, assemble_labels(volume, results), volume)
    if args.confidence:
        atomic_write_text(args.confidence, json.dumps(summary, indent=1) + "\n")
    print(f"labels: {args.out}")
    return 0
