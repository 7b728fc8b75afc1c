"""Arguments shared by the crop models' training verbs (``train-refiner``, ``train-presence``).

The verbs pass their recipe's defaults as literals (the recipe dataclasses live beside torch, which
``cineprop --help`` must not import); ``tests/test_crop_training_cli.py`` checks they agree.
"""

from __future__ import annotations

import argparse
import dataclasses


def add_crop_training_arguments(p: argparse.ArgumentParser, *, out: str, steps: int, batch: int, lr: float,
                                image_share: float, validate_every: int) -> None:
    """The flags both crop-model verbs take, with the verb's recipe defaults for those that differ."""
    p.add_argument("--data", default="../shared/data", help="folder with acdc/, hc18/, busi/, chasedb1/")
    p.add_argument("--out", default=out, help="run folder (best.pt, last.pt, history.json)")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-share", type=float, default=image_share, help="share of each batch from the 2D image sets")
    p.add_argument("--exclude-labels", type=int, nargs="*", default=[],
                   help="ACDC labels never painted in training (e.g. 3 to hold out the LV)")
    p.add_argument("--no-acdc", action="store_true",
                   help="train on the 2D image sets only (ACDC val still validates): the transfer experiment")
    p.add_argument("--synthetic", type=int, default=0,
                   help="anatomy-free synthetic scenes to add (made once, cached in OUT/synthetic.npz)")
    p.add_argument("--synthetic-share", type=float, default=0.0,
                   help="share of each batch from the synthetic scenes")
    p.add_argument("--validate-every", type=int, default=validate_every)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")


def crop_training_recipe(recipe_type, args: argparse.Namespace):
    """``recipe_type`` filled from ``args``: every field with a flag of the same name (``--no-acdc`` gives
    ``acdc``, ``--exclude-labels`` a tuple); fields without a flag keep their defaults."""
    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(recipe_type) if f.name in given}
    values["exclude_labels"] = tuple(values.get("exclude_labels", ()))
    values["acdc"] = not args.no_acdc
    return recipe_type(**values)
