"""The supervised segmentation loss shared by image training, fine-tuning and relearning (``L_s``).

It is MONAI's :class:`monai.losses.DiceCELoss` configured to the loss cineprop has always used:
cross-entropy over both classes plus the soft Dice of the foreground only, ``+1`` in numerator and
denominator so an empty target is allowed. ``tests/test_losses.py`` checks it against that formula.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=2)
def _dice_ce(per_image: bool) -> torch.nn.Module:
    """The configured ``DiceCELoss`` (stateless; built once per mode, not on every training step)."""
    # Imported here: ``import monai`` costs about 4 s, which every CLI verb would otherwise pay.
    from monai.losses import DiceCELoss

    return DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=not per_image,
                      smooth_nr=1.0, smooth_dr=1.0)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """Cross-entropy + soft foreground Dice.

    Args:
        logits: ``B×2×H×W`` (background, foreground) scores before the softmax.
        target: ``B×H×W`` {0, 1} masks, any dtype.
        per_image: ``False`` pools the Dice over the whole batch (image training: a batch of
            episodes, some with empty targets); ``True`` takes each image's Dice, then their mean
            (relearning: a batch of frames of one cine whose labels differ in size).

    Returns:
        a scalar: ``mean CE + (1 − (2·Σ p·t + 1) / (Σ p + Σ t + 1))``, sums over ``H×W`` (and ``B``
        unless ``per_image``).
    """
    return _dice_ce(bool(per_image))(logits, target.long().unsqueeze(1))
