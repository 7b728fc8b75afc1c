"""``cineprop finetune DATA_DIR``: fine-tune the image model on approved labels (published only if better)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune the image model on corrected, approved cines",
                       description="DATA_DIR holds ID.nii.gz + ID_label.nii.gz pairs (approved labels). Studies are "
                                   "split into training and held-back validation; OUT is written only if the "
                                   "validation Dice improves.")
    p.add_argument("data_dir")
    p.add_argument("--checkpoint", default=None, help="starting checkpoint (default: the bundled one)")
    p.add_argument("--out", required=True, help="where to write the fine-tuned checkpoint")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.evaluate import find_cases
    from cineprop.training.finetune import FinetuneConfig, finetune_image_model

    cases = find_cases(args.data_dir)
    stats = finetune_image_model([(str(c.image), str(c.label)) for c in cases], args.checkpoint, args.out,
                                 FinetuneConfig(steps=args.steps, lr=args.lr, batch=args.batch, seed=args.seed))
    verdict = f"published {args.out}" if stats["published"] else "not published (validation did not improve)"
    print(f"validation Dice {stats['val_before']:.4f} -> {stats['val_after']:.4f} on {stats['val_studies']}: {verdict}")
    return 0
