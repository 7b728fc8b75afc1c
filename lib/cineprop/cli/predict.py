"""``cineprop predict IMAGE --support LABEL --out OUT``: propagate painted frames through a cine file.

Several support files (``--support A B --out a b``) are propagated in turn, as a user correcting
and propagating again would: each cine keeps one :class:`~cineprop.repropagate.Repropagator`, so
methods with a session recompute only what the next support changed.
"""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_method_arguments, method_options


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="propagate painted support frames through a cine",
                       description="Segment every frame of IMAGE from the frames painted in the support label "
                                   "volume (same shape; frames with any non-zero label are support frames).")
    p.add_argument("image", help="cine: NIfTI/NRRD (H×W×T or H×W×Z×T), or any input 'cineprop convert' reads "
                                 "(DICOM file or series folder, video file, frame folder)")
    p.add_argument("--support", required=True, nargs="+",
                   help="label volume with the painted frames; several: propagated in turn, reusing the session")
    p.add_argument("--frames", type=int, nargs="+", help="use only these frames of the support volume")
    p.add_argument("--slice", type=int, default=None, help="4D inputs: only this slice position")
    p.add_argument("--out", required=True, nargs="+",
                   help="output label volume (same geometry as IMAGE, uint8); one per --support")
    p.add_argument("--confidence", default=None, help="also write per-frame confidence as JSON here")
    add_method_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from cineprop.errors import CinepropError
    from cineprop.io import atomic_write_text, load_cines
    from cineprop.methods import build_propagator
    from cineprop.repropagate import Repropagator

    if len(args.out) != len(args.support):
        raise CinepropError(f"give one --out per --support ({len(args.support)} supports, {len(args.out)} outputs)")
    volume, cines = load_cines(args.image, args.slice)
    propagator = build_propagator(args.method, **method_options(args))
    live = {cine.name: Repropagator(propagator, cine) for cine in cines}
    summary = []
    for support, out in zip(args.support, args.out):
        summary += _predict_one(args, volume, cines, live, support, out)
    if args.confidence:
        atomic_write_text(args.confidence, json.dumps(summary, indent=1) + "\n")
    return 0


def _predict_one(args, volume, cines, live, support: str, out: str) -> list[dict]:
    """Propagate one support file through every painted cine, write ``out``; per-cine summaries."""
    from cineprop.errors import SupportError
    from cineprop.io import assemble_labels, labels_for, read_label, write_label
    from cineprop.support import SupportSet

    painted = read_label(support, like=volume)
    results, summary = [], []
    for cine in cines:
        labels = labels_for(painted, cine)
        if not labels.any() and len(cines) > 1:
            continue  # 4D: slice positions nobody painted stay empty
        result = live[cine.name].propagate(SupportSet.from_labels(labels, args.frames))
        reused = result.details["repropagation"]["reused_session"]
        results.append((cine, result.labels))
        summary.append({"cine": cine.name, "support": support, "support_frames": result.support_frames,
                        "confidence": [round(float(c), 4) for c in result.confidence],
                        "flagged": result.flagged(), "seconds": round(result.seconds, 3), "reused_session": reused})
        print(f"{cine.name}: {cine.num_frames} frames from support {result.support_frames} in "
              f"{result.seconds:.2f} s{' (session reused)' if reused else ''}; flagged {result.flagged() or 'none'}")
    if not results:
        raise SupportError(f"{support}: no slice position has painted frames")
    write_label(out, assemble_labels(volume, results), volume)
    print(f"labels: {out}")
    return summary
