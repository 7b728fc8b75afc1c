"""``cineprop predict IMAGE --support LABEL --out OUT``: propagate painted frames through a cine file.

Several support files (``--support A B --out a b``) are propagated in turn, as a user correcting
and propagating again would: each cine keeps one :class:`~cineprop.repropagate.Repropagator`, so
methods with a session recompute only what the next support changed.
"""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_method_arguments, method_settings


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
    from cineprop.methods import build_propagator, method_options
    from cineprop.repropagate import Repropagator

    if len(args.out) != len(args.support):
        raise CinepropError(f"give one --out per --support ({len(args.support)} supports, {len(args.out)} outputs)")
    volume, cines = load_cines(args.image, args.slice)
    propagator = build_propagator(args.method, method_options(args.method, method_settings(args)))
    live = {cine.name: Repropagator(propagator, cine) for cine in cines}
    summary = []
    for support, out in zip(args.support, args.out):
        summary += _predict_one(args, volume, cines, live, support, out)
    if args.confidence:
        atomic_write_text(args.confidence, json.dumps(summary, indent=1) + "\n")
    return 0


def _predict_one(args, volume, cines, live, support: str, out: str) -> list[dict]:
    """Propagate one support file through every painted cine, write ``out``; per-cine summaries."""
    from cineprop.io import read_label, write_label
    from cineprop.volume_propagation import propagate_volume

    painted = read_label(support, like=volume)
    result = propagate_volume(volume, cines, painted, lambda cine, s: live[cine.name].propagate(s), args.frames)
    summary = []
    for r in result.cines:
        cine, p = r.cine, r.propagation
        reused = p.details["repropagation"]["reused_session"]
        summary.append({"cine": cine.name, "support": support, "support_frames": p.support_frames,
                        "confidence": [round(float(c), 4) for c in p.confidence],
                        "flagged": p.flagged(), "seconds": round(p.seconds, 3), "reused_session": reused})
        print(f"{cine.name}: {cine.num_frames} frames from support {p.support_frames} in "
              f"{p.seconds:.2f} s{' (session reused)' if reused else ''}; flagged {p.flagged() or 'none'}")
    write_label(out, result.labels, volume)
    print(f"labels: {out}")
    return summary
