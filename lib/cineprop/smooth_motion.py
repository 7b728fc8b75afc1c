"""Long cines with smooth, periodic, cardiac-like motion made from labelled still frames.

A benchmark for the product's main case (a painted frame carried along a long cine where motion is
smooth and registration is nearly right). Each cine animates one labelled 2D frame with:

* a periodic affine motion: contraction (isotropic scale down to ``1 − scale``) on a period of
  ``period`` frames, a small rotation and an in-plane shift on the same cycle, plus a slower
  "breathing" drift;
* a periodic smooth elastic deformation (two Gaussian-smoothed random fields, one following the
  contraction, one a quarter cycle later);
* Gaussian noise on every frame and *dropout* frames (signal mostly lost, as in a bad echo
  frame or an ECG-gating glitch) whose labels stay those of the moved anatomy.

Labels are moved with the same sampling grid as the image (nearest neighbour), so they stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SmoothMotion:
    """Motion ranges (drawn per cine from ``rng``). Lengths are fractions of the image's longer side.

    Attributes:
        frames: cine length.
        period: frames per motion cycle, drawn from this range.
        scale: contraction amplitude range (0.1: down to 90 % size at peak).
        rotation: peak rotation range, degrees.
        shift: peak cyclic shift range.
        breathing: amplitude range of the slow drift (period 2–3 cycles).
        elastic: peak elastic displacement range; ``elastic_sigma`` its smoothness.
        noise: Gaussian noise std range (image in [0, 1]).
        dropout: probability that a frame other than frame 0 is a dropout frame.
    """

    frames: int = 60
    period: tuple[float, float] = (18.0, 30.0)
    scale: tuple[float, float] = (0.06, 0.15)
    rotation: tuple[float, float] = (2.0, 6.0)
    shift: tuple[float, float] = (0.01, 0.04)
    breathing: tuple[float, float] = (0.01, 0.03)
    elastic: tuple[float, float] = (0.01, 0.025)
    elastic_sigma: float = 0.08
    noise: tuple[float, float] = (0.02, 0.05)
    dropout: float = 0.03


def _field(rng: np.random.Generator, h: int, w: int, amplitude: float, sigma: float) -> np.ndarray:
    """``H×W×2`` smooth random displacement with peak magnitude ``amplitude`` pixels."""
    noise = rng.standard_normal((h, w, 2)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(noise[..., c], (0, 0), sigma) for c in range(2)], axis=-1)
    return smooth * (amplitude / max(float(np.abs(smooth).max()), 1e-6))


def animate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
            motion: SmoothMotion = SmoothMotion()) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Animate one labelled frame.

    Args:
        image: ``H×W`` float in [0, 1]. label: ``H×W`` uint8 (0 background).

    Returns:
        ``frames`` ``H×W×T`` float32 in [0, 1], ``labels`` ``H×W×T`` uint8, and the dropout frame indices.
    """
    h, w = image.shape
    side = float(max(h, w))
    pick = lambda r: float(rng.uniform(*r))  # noqa: E731
    period, scale, rotation = pick(motion.period), pick(motion.scale), pick(motion.rotation)
    shift = np.array([pick(motion.shift), pick(motion.shift)]) * side * rng.choice([-1, 1], 2)
    breath = np.array([pick(motion.breathing), pick(motion.breathing)]) * side
    breath_period = period * float(rng.uniform(2.0, 3.0))
    phase0, breath0 = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))
    sigma = motion.elastic_sigma * side
    elastic_a = _field(rng, h, w, pick(motion.elastic) * side, sigma)
    elastic_b = _field(rng, h, w, pick(motion.elastic) * side, sigma)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    t = motion.frames
    frames = np.zeros((h, w, t), np.float32)
    labels = np.zeros((h, w, t), np.uint8)
    dropout = [i for i in range(1, t) if rng.random() < motion.dropout]
    for i in range(t):
        phi = 2 * np.pi * i / period
        contraction = 0.5 * (1 - np.cos(phi))             # 0 at frame 0 (the painted frame's pose), 1 at peak
        s = 1.0 - scale * contraction
        angle = np.deg2rad(rotation) * np.sin(phi)
        offset = shift * contraction + breath * (np.sin(2 * np.pi * i / breath_period + breath0) - np.sin(breath0))
        # backward map: output pixel x samples the still frame at R(−angle)·(x − c − offset)/s + c + elastic
        dy, dx = yy - cy - offset[0], xx - cx - offset[1]
        c, sn = np.cos(angle), np.sin(angle)
        elastic = contraction * elastic_a + (np.sin(phi + phase0) - np.sin(phase0)) * elastic_b
        map_x = (c * dx + sn * dy) / s + cx + elastic[..., 0]
        map_y = (-sn * dx + c * dy) / s + cy + elastic[..., 1]
        frames[:, :, i] = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
        labels[:, :, i] = cv2.remap(label, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    noise = pick(motion.noise)
    frames += rng.normal(0.0, noise, frames.shape).astype(np.float32)
    for i in dropout:                                        # most of the signal lost, heavy noise
        frames[:, :, i] = 0.25 * frames[:, :, i] + rng.normal(0.3, 4 * noise, (h, w)).astype(np.float32)
    return np.clip(frames, 0.0, 1.0), labels, dropout
