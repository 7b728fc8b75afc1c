"""``cineprop train-presence``: train the presence check (has the painted structure left the frame?)."""

from __future__ import annotations

import argparse

from cineprop.cli.crop_training import add_crop_training_arguments, crop_training_recipe


def add_parser(sub) -> None:
    p = sub.add_parser("train-presence", help="train the presence check on the carrier refiner's samples (resumable)",
                       description="On painted masks carried onto other frames (the samples train-refiner makes: "
                                   "ACDC train cines, the 2D sets' deformed copies), learn whether the structure "
                                   "is absent from the query frame; keep the step best on ACDC val.")
    add_crop_training_arguments(p, out="runs/presence", steps=4000, batch=64, lr=2e-3, image_share=0.15,
                                validate_every=500)
    p.add_argument("--samples", default=None,
                   help="folder whose samples.npz to use or make (e.g. a train-refiner run made with the same "
                        "--exclude-labels/--no-acdc; default: --out)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="absent probability above which validation empties the carried mask")
    p.add_argument("--vanish", type=float, default=0.5, help="share of the scenes whose object left the query")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.training.train_presence import PresenceTrainConfig, train_presence

    best = train_presence(crop_training_recipe(PresenceTrainConfig, args), resume=not args.no_resume)["best"]
    print(f"best val gain {best['gain']:+.4f} at step {best['step']}: {args.out}/best.pt")
    return 0
