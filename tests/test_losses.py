"""The shared segmentation loss (MONAI's DiceCELoss) equals the formula cineprop trained with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cineprop.training.losses import segmentation_loss


def formula(logits: torch.Tensor, target: torch.Tensor, per_image: bool) -> torch.Tensor:
    """The hand-written loss the image model and relearning used before MONAI (the reference)."""
    fg, t = torch.softmax(logits, 1)[:, 1], target.to(logits.dtype)
    dims = (1, 2) if per_image else (0, 1, 2)
    dice = 1 - (2 * (fg * t).sum(dims) + 1) / (fg.sum(dims) + t.sum(dims) + 1)
    return F.cross_entropy(logits, target.long()) + dice.mean()


def cases(dtype: torch.dtype):
    """Random logits and masks of varied size and fill, the first target of every other case empty."""
    gen = torch.Generator().manual_seed(0)
    for k in range(12):
        b, r = 1 + k % 4, 5 + 7 * k
        logits = (3 * torch.randn(b, 2, r, r, generator=gen, dtype=dtype)).requires_grad_()
        target = torch.rand(b, r, r, generator=gen) < float(torch.rand((), generator=gen))
        if k % 2 == 0:
            target[0] = False
        yield logits, target.long() if k % 3 else target.float()


@pytest.mark.parametrize("per_image", [False, True])
def test_loss_and_gradient_equal_the_formula(per_image):
    for logits, target in cases(torch.float64):
        ours = segmentation_loss(logits, target, per_image)
        (grad,) = torch.autograd.grad(ours, logits)
        ref = formula(logits, target, per_image)
        (ref_grad,) = torch.autograd.grad(ref, logits)
        assert ours.item() == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)
        assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-15)


def test_float32_differs_from_the_formula_only_by_summation_order():
    """MONAI sums in another order: at most a few float32 ulps (≈ 2.4e-7 at a loss of 2)."""
    for logits, target in cases(torch.float32):
        for per_image in (False, True):
            assert abs(segmentation_loss(logits, target, per_image).item()
                       - formula(logits, target, per_image).item()) < 1e-6


def test_batch_pooling_is_what_per_image_switches():
    """A small label beside a large one: pooled and per-image Dice differ, so the flag matters."""
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[0, 2:4, 2:4] = 1
    target[1, 1:15, 1:15] = 1
    logits = torch.zeros(2, 2, 16, 16)
    logits[:, 1] = 2.0 * target - 1.0
    pooled, per_image = segmentation_loss(logits, target), segmentation_loss(logits, target, per_image=True)
    assert per_image.item() > pooled.item() + 0.01
    assert pooled.item() == pytest.approx(formula(logits, target, False).item(), abs=1e-6)
