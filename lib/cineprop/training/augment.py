"""Augmentations for episodic training (numpy/OpenCV, all driven by one ``np.random.Generator``).

Geometric transforms that must keep support and query aligned (flips, 90° turns, the ROI crop)
are drawn once per episode; the small relative deformation that stands in for motion between two
frames, and noise, are drawn per image. Intensity changes (gamma, contrast, speckle) push the
model to transfer across modalities (MRI ↔ ultrasound ↔ fundus).

Why not ``monai.transforms``: the bundled model was trained with exactly these draws, and each
MONAI counterpart changes either the draws, the distribution or the speed.

* Flips and 90° turns: ``Flip``/``Rotate90`` give the same arrays (``tests/test_augment.py``),
  but they wrap every image in a MetaTensor, 1.4 ms against 0.08 ms for a 128² crop, on the data
  path of every training step.
* ``deform``: ``Rand2DElastic``/``RandAffine`` draw from their own ``RandomState`` and
  parametrise the elastic field differently (control-point spacing and magnitude, not a 4×4 field
  in units of the side). They also pad the border in other ways. One ``np.random.Generator``
  draws everything here, so a seed fixes the whole stream, and the resumable ``last.pt`` stores it.
* ``Intensity``: ``AdjustContrast`` applies gamma to the crop's own min–max range, which is not
  the absolute [0, 1] scale, so a dark crop would brighten. ``GaussianSmooth`` zero-pads the
  border, giving dark rims, and MONAI has no multiplicative speckle.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cineprop.roi import Roi


@dataclass(frozen=True)
class Geometry2D:
    """An episode-wide geometric view: ROI crop, then flips and a 90° turn, at ``resolution``."""

    roi: Roi
    resolution: int
    flip_y: bool = False
    flip_x: bool = False
    turns: int = 0

    def apply(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """``H×W`` image → ``resolution×resolution`` view (``nearest`` for masks)."""
        out = self.roi.crop(image, self.resolution, nearest=nearest)
        if self.flip_y:
            out = out[::-1]
        if self.flip_x:
            out = out[:, ::-1]
        return np.ascontiguousarray(np.rot90(out, self.turns))


def random_view(rng: np.random.Generator, roi: Roi, resolution: int) -> Geometry2D:
    return Geometry2D(roi, resolution, bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(4)))


def jitter_roi(rng: np.random.Generator, box: tuple[int, int, int, int], shape: tuple[int, int],
               margin: tuple[float, float] = (0.5, 1.1), shift: float = 0.15) -> Roi:
    """An ROI around ``box`` like the session's, with random margin and a random shift (× side)."""
    from cineprop.roi import roi_around

    roi = roi_around(box, shape, float(rng.uniform(*margin)), 48)
    d = shift * roi.side
    return Roi(roi.y0 + float(rng.uniform(-d, d)), roi.x0 + float(rng.uniform(-d, d)), roi.side)


def deform(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, strength: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Small affine + smooth elastic warp (a stand-in for motion between neighbouring frames).

    ``strength`` 1 ≈ rotation ±8°, scale ±8 %, shift ±4 % of the side, elastic ±2 % of the side.
    """
    h, w = image.shape
    side = max(h, w)
    angle = rng.uniform(-8, 8) * strength
    scale = 1.0 + rng.uniform(-0.08, 0.08) * strength
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * side * strength
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    coarse = rng.normal(0, 0.02 * side * strength, (2, 4, 4)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    inv = cv2.invertAffineTransform(matrix)
    mx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2] + dx
    my = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2] + dy
    warped = cv2.remap(image.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    warped_mask = cv2.remap(mask.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 0.5
    return warped, warped_mask


def corrupt_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Imitate an imperfect prediction used as memory: erode/dilate, shift, or blob noise."""
    mask = mask.astype(np.uint8)
    choice = rng.integers(3)
    if choice == 0:
        k = int(rng.integers(1, 4))
        kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
        mask = cv2.dilate(mask, kernel) if rng.random() < 0.5 else cv2.erode(mask, kernel)
    elif choice == 1:
        shift = rng.integers(-3, 4, 2)
        mask = np.roll(mask, tuple(int(s) for s in shift), axis=(0, 1))
    else:
        noise = cv2.GaussianBlur(rng.random(mask.shape).astype(np.float32), (0, 0), 3)
        edge = cv2.dilate(mask, np.ones((5, 5), np.uint8)) - cv2.erode(mask, np.ones((5, 5), np.uint8))
        flip = (edge > 0) & (noise > np.quantile(noise, 0.7))
        mask = np.where(flip, 1 - mask, mask).astype(np.uint8)
    return mask > 0


@dataclass(frozen=True)
class Intensity:
    """Episode-wide intensity change (gamma, contrast, brightness); noise is added per image."""

    gamma: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    gauss: float = 0.0
    speckle: float = 0.0
    blur: float = 0.0

    def apply(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        out = np.clip(image, 0.0, 1.0) ** self.gamma
        out = (out - 0.5) * self.contrast + 0.5 + self.brightness
        if self.blur > 0:
            out = cv2.GaussianBlur(out.astype(np.float32), (0, 0), self.blur)
        if self.speckle > 0:
            out = out * (1.0 + rng.normal(0, self.speckle, out.shape))
        if self.gauss > 0:
            out = out + rng.normal(0, self.gauss, out.shape)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_intensity(rng: np.random.Generator) -> Intensity:
    return Intensity(
        gamma=float(np.exp(rng.uniform(-0.5, 0.5))),
        contrast=float(rng.uniform(0.7, 1.3)),
        brightness=float(rng.uniform(-0.1, 0.1)),
        gauss=float(rng.uniform(0, 0.05)) if rng.random() < 0.5 else 0.0,
        speckle=float(rng.uniform(0, 0.25)) if rng.random() < 0.3 else 0.0,
        blur=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.2 else 0.0,
    )
