"""``cineprop train-presence``: train the presence check (has the painted structure left the frame?)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("train-presence", help="train the presence check on the carrier refiner's samples (resumable)",
                       description="On painted masks carried onto other frames (the samples train-refiner makes: "
                                   "ACDC train cines, the 2D sets' deformed copies), learn whether the structure "
                                   "is absent from the query frame; keep the step best on ACDC val.")
    p.add_argument("--data", default="../shared/data", help="folder with acdc/, hc18/, busi/, chasedb1/")
    p.add_argument("--out", default="runs/presence", help="run folder (best.pt, last.pt, history.json)")
    p.add_argument("--samples", default=None,
                   help="folder whose samples.npz to use or make (e.g. a train-refiner run; default: --out)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-share", type=float, default=0.15, help="share of each batch from the 2D image sets")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="absent probability above which validation empties the carried mask")
    p.add_argument("--exclude-labels", type=int, nargs="*", default=[],
                   help="ACDC labels never painted in training (with a --samples folder made the same way)")
    p.add_argument("--no-acdc", action="store_true", help="2D image sets only (with a --samples folder made so)")
    p.add_argument("--synthetic", type=int, default=0,
                   help="anatomy-free scenes to add (made once, cached in OUT/synthetic.npz)")
    p.add_argument("--synthetic-share", type=float, default=0.0, help="share of each batch from those scenes")
    p.add_argument("--vanish", type=float, default=0.5, help="share of the scenes whose object left the query")
    p.add_argument("--validate-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.training.train_presence import PresenceTrainConfig, train_presence

    cfg = PresenceTrainConfig(data=args.data, out=args.out, samples=args.samples, steps=args.steps, batch=args.batch,
                              lr=args.lr, seed=args.seed, image_share=args.image_share, threshold=args.threshold,
                              validate_every=args.validate_every, threads=args.threads,
                              exclude_labels=tuple(args.exclude_labels), acdc=not args.no_acdc,
                              synthetic=args.synthetic, synthetic_share=args.synthetic_share, vanish=args.vanish)
    best = train_presence(cfg, resume=not args.no_resume)["best"]
    print(f"best val gain {best['gain']:+.4f} at step {best['step']}: {args.out}/best.pt")
    return 0
