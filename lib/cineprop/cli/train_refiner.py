"""``cineprop train-refiner``: train the carrier refiner (registration-guided refinement)."""

from __future__ import annotations

import argparse

from cineprop.cli.crop_training import add_crop_training_arguments, crop_training_recipe


def add_parser(sub) -> None:
    p = sub.add_parser("train-refiner", help="train the carrier refiner that corrects carried masks (resumable)",
                       description="Carry ACDC train masks with the session's carrier (DIS, anchored) and the 2D "
                                   "sets' masks across random deformations; train a small U-Net to correct the "
                                   "carried mask; keep the step that is best on ACDC val. The run folder also "
                                   "keeps the samples (samples.npz).")
    add_crop_training_arguments(p, out="runs/refiner", steps=2000, batch=32, lr=1e-3, image_share=0.3,
                                validate_every=250)
    p.add_argument("--invert", type=float, default=0.0,
                   help="probability of negating a sample's frame intensities (polarity-free training)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.training.train_refiner import RefinerTrainConfig, train_refiner

    best = train_refiner(crop_training_recipe(RefinerTrainConfig, args), resume=not args.no_resume)["best"]
    print(f"best val Dice {best['dice']:.4f} (carried {best.get('carried', float('nan')):.4f}) at step "
          f"{best['step']}: {args.out}/best.pt")
    return 0
