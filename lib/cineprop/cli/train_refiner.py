"""``cineprop train-refiner``: train the carrier refiner (registration-guided refinement)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("train-refiner", help="train the carrier refiner that corrects carried masks (resumable)",
                       description="Carry ACDC train masks with the session's carrier (DIS, anchored) and the 2D "
                                   "sets' masks across random deformations; train a small U-Net to correct the "
                                   "carried mask; keep the step that is best on ACDC val.")
    p.add_argument("--data", default="../shared/data", help="folder with acdc/, hc18/, busi/, chasedb1/")
    p.add_argument("--out", default="runs/refiner", help="run folder (samples.npz, best.pt, last.pt, history.json)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-share", type=float, default=0.3, help="share of each batch from the 2D image sets")
    p.add_argument("--exclude-labels", type=int, nargs="*", default=[],
                   help="ACDC labels never painted in training (e.g. 3 to hold out the LV)")
    p.add_argument("--no-acdc", action="store_true",
                   help="train on the 2D image sets only (ACDC val still validates): the transfer experiment")
    p.add_argument("--synthetic", type=int, default=0,
                   help="number of synthetic shape-change scenes to carry (anatomy-free samples, made once)")
    p.add_argument("--synthetic-share", type=float, default=0.0, help="share of each batch from the synthetic scenes")
    p.add_argument("--invert", type=float, default=0.0,
                   help="probability of negating a sample's frame intensities (polarity-free training)")
    p.add_argument("--validate-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.training.train_refiner import RefinerTrainConfig, train_refiner

    cfg = RefinerTrainConfig(data=args.data, out=args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                             seed=args.seed, image_share=args.image_share, validate_every=args.validate_every,
                             threads=args.threads, exclude_labels=tuple(args.exclude_labels),
                             acdc=not args.no_acdc, synthetic=args.synthetic,
                             synthetic_share=args.synthetic_share, invert=args.invert)
    summary = train_refiner(cfg, resume=not args.no_resume)
    best = summary["best"]
    print(f"best val Dice {best['dice']:.4f} (carried {best.get('carried', float('nan')):.4f}) at step "
          f"{best['step']}: {args.out}/best.pt")
    return 0
