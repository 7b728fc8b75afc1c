"""``cineprop train-image``: episodic training of the image-phase few-shot model."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("train-image", help="train the image-phase few-shot model (episodic, resumable)",
                       description="Train on labelled images (ACDC train frames, HC18, BUSI, CHASE_DB1) in "
                                   "few-shot episodes; validate by propagating ACDC val cines; keep the best.")
    p.add_argument("--data", default="../shared/data", help="folder with acdc/, hc18/, busi/, chasedb1/")
    p.add_argument("--out", default="runs/image", help="run folder (best.pt, last.pt, curve.png, history.json)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--backbone", default="light", choices=["light", "resnet18"])
    p.add_argument("--backbone-weights", default=None,
                   help="local torchvision resnet18 state dict (e.g. ImageNet) to initialise --backbone resnet18")
    p.add_argument("--width-scale", type=float, default=1.0,
                   help="multiply the light backbone's and the decoder's channel widths (1.5: about 2× the "
                        "parameters); a wider network is a new model, so --init cannot start it from a narrower one")
    p.add_argument("--exclude-labels", type=int, nargs="*", default=[],
                   help="ACDC labels never shown in training (e.g. 3 to hold out the LV)")
    p.add_argument("--image-sets", nargs="*", default=["hc18", "busi", "chasedb1"])
    p.add_argument("--no-acdc", action="store_true",
                   help="train on the 2D image sets only, no ACDC episode (the no-ACDC generalisation model; "
                        "ACDC val still validates)")
    p.add_argument("--validate-every", type=int, default=250)
    p.add_argument("--val-limit", type=int, default=None, help="validate on the first N val sequences")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores; 1 is faster when other jobs share the CPU)")
    p.add_argument("--init", default=None,
                   help="start from this checkpoint's weights (a warm restart: new optimiser and schedule; "
                        "'bundled' for the bundled model); ignored when OUT/last.pt is resumed")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.training.train_image import TrainConfig, train_image

    cfg = TrainConfig(data=args.data, out=args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      validate_every=args.validate_every, exclude_labels=tuple(args.exclude_labels),
                      acdc=not args.no_acdc, image_sets=tuple(args.image_sets), val_limit=args.val_limit,
                      backbone_weights=args.backbone_weights, threads=args.threads, init=args.init,
                      model=_model_config(args))
    summary = train_image(cfg, resume=not args.no_resume)
    print(f"best val Dice {summary['best']['dice']:.4f} at step {summary['best']['step']}: {args.out}/best.pt")
    return 0


def _model_config(args: argparse.Namespace):
    """The architecture from the flags: ``--width-scale`` scales the default widths, rounded to multiples of 4."""
    from cineprop.errors import CinepropError
    from cineprop.model import ModelConfig

    if not 0.25 <= args.width_scale <= 4:
        raise CinepropError(f"--width-scale {args.width_scale} is outside 0.25..4")
    base = ModelConfig()

    def scaled(widths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(4, 4 * round(w * args.width_scale / 4)) for w in widths)

    return ModelConfig(resolution=args.resolution, backbone=args.backbone, widths=scaled(base.widths),
                       blocks=base.blocks, decoder=scaled(base.decoder))
