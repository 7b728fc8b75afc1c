"""``cineprop train-refiner`` and ``train-presence`` share their flags (:mod:`cineprop.cli.crop_training`):
their defaults are the recipes' own, and the flags given reach the recipe."""

from __future__ import annotations

import dataclasses

import pytest

from cineprop.cli import build_parser
from cineprop.cli.crop_training import crop_training_recipe
from cineprop.training.train_presence import PresenceTrainConfig
from cineprop.training.train_refiner import RefinerTrainConfig


@pytest.mark.parametrize("verb, recipe_type", [("train-refiner", RefinerTrainConfig),
                                               ("train-presence", PresenceTrainConfig)])
def test_the_flags_default_to_the_recipe(verb, recipe_type):
    args = build_parser().parse_args([verb])
    assert crop_training_recipe(recipe_type, args) == recipe_type()
    flagged = {f.name for f in dataclasses.fields(recipe_type)} & set(vars(args))
    assert {"data", "out", "steps", "batch", "lr", "image_share", "synthetic", "validate_every"} <= flagged


def test_the_flags_given_reach_the_recipe():
    args = build_parser().parse_args(["train-presence", "--out", "o", "--samples", "s", "--steps", "7",
                                      "--exclude-labels", "3", "--no-acdc", "--synthetic", "5",
                                      "--synthetic-share", "0.3", "--vanish", "0.25", "--threshold", "0.7"])
    cfg = crop_training_recipe(PresenceTrainConfig, args)
    assert (cfg.out, cfg.samples, cfg.steps, cfg.exclude_labels, cfg.acdc) == ("o", "s", 7, (3,), False)
    assert (cfg.synthetic, cfg.synthetic_share, cfg.vanish, cfg.threshold) == (5, 0.3, 0.25, 0.7)
    cfg = crop_training_recipe(RefinerTrainConfig, build_parser().parse_args(["train-refiner", "--invert", "0.25"]))
    assert cfg.invert == 0.25 and cfg.acdc and cfg.exclude_labels == ()
