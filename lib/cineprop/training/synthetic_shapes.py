"""Synthetic shape changes for the carrier refiner: anatomy-free training pairs that transfer.

A refiner trained on ACDC crops learns ACDC's shapes (a refiner trained with the LV left out lowers
LV Dice; one trained on the 2D sets alone lowers ACDC: docs/benchmarks.md). What should transfer to
any organ is the generic rule "the object is the region that looks like the painted object, up to
the query's edges". These pairs teach that rule and nothing about a particular anatomy, in the
spirit of domain-randomised training (SynthSeg, SynthMorph):

* a random scene: a background partitioned into 2–5 smooth random regions and one object, a random
  blob (an ellipse with a noisy boundary, a ring with probability :data:`RING`), each region with its
  own random intensity and texture;
* the *painted* frame shows the scene moved by a smooth deformation
  (:func:`cineprop.training.augment.deform`) with the object itself changed in size and outline
  (scaled by 0.6–1.5 about its centre, a fresh boundary), the change registration cannot explain;
  the *query* shows the scene as it is;
* both rendered with the same region intensities (slightly jittered), blur (partial volume), a bias
  field, Gaussian or speckle noise and a gamma, independently per frame.

:func:`shape_change_pair` returns ``(painted frame, painted mask, query frame, query mask)``, all
``S×S`` (frames float32 in about [0, 1], masks bool). With probability ``vanish`` the object has
left the query (it is not rendered there and the query mask is empty): the anatomy-free case of a
structure leaving the frame, for the presence check (:mod:`cineprop.model.presence`).
"""

from __future__ import annotations

import cv2
import numpy as np

from cineprop.training.augment import deform

#: probability that the object is a ring (a wall around a cavity, like a myocardium or a vessel wall)
RING = 0.25


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """``S×S`` smooth random field with unit spread."""
    field = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), sigma)
    return field / (field.std() + 1e-6)


def _blob(rng: np.random.Generator, size: int, centre: tuple[float, float], radii: tuple[float, float],
          angle: float, scale: float, ring: float) -> np.ndarray:
    """A noisy-outlined ellipse (``ring`` > 0: minus an inner one of ``ring`` × its radii), bool ``S×S``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - centre[0], xx - centre[1]
    u, v = (c * dx + s * dy) / (radii[1] * scale), (-s * dx + c * dy) / (radii[0] * scale)
    r = np.sqrt(u ** 2 + v ** 2)
    wobble = 0.15 * _smooth_noise(rng, size, size * float(rng.uniform(0.04, 0.1)))
    inside = r + wobble < 1.0
    if ring > 0:
        inside &= r + 0.5 * wobble > ring
    return inside


def _scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Background region map (``S×S`` ints) and the object's parameters."""
    regions = int(rng.integers(2, 6))
    sigma = size * float(rng.uniform(0.06, 0.15))
    background = np.argmax(np.stack([_smooth_noise(rng, size, sigma) for _ in range(regions)]), axis=0)
    obj = {"centre": tuple(size * rng.uniform(0.35, 0.65, 2)), "radii": tuple(size * rng.uniform(0.07, 0.22, 2)),
           "angle": float(rng.uniform(0, np.pi)), "ring": float(rng.uniform(0.45, 0.75)) if rng.random() < RING else 0.0}
    return background, obj


def _render(rng: np.random.Generator, regions: np.ndarray, mask: np.ndarray, levels: np.ndarray,
            texture: np.ndarray) -> np.ndarray:
    """One frame: region intensities (``levels[k]``, the object last), texture, blur, bias, noise."""
    image = levels[regions].astype(np.float32)
    image[mask] = levels[-1]
    image = image * (1 + texture)
    image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 2.0)))
    size = image.shape[0]
    image = image * (1 + 0.2 * _smooth_noise(rng, size, size / 3))
    if rng.random() < 0.5:
        image = image + rng.normal(0, float(rng.uniform(0.01, 0.08)), image.shape).astype(np.float32)
    else:
        image = image * rng.rayleigh(float(rng.uniform(0.2, 0.6)), image.shape).astype(np.float32) / 1.25
    return np.clip(image, 0, 1) ** float(rng.uniform(0.7, 1.4))


def shape_change_pair(rng: np.random.Generator, size: int = 128, vanish: float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(painted frame, painted mask, query frame, query mask)`` of one random scene (module doc);
    with probability ``vanish`` the object is absent from the query."""
    background, obj = _scene(rng, size)
    query_mask = _blob(rng, size, obj["centre"], obj["radii"], obj["angle"], 1.0, obj["ring"])
    painted_mask = _blob(rng, size, obj["centre"], obj["radii"], obj["angle"] + float(rng.normal(0, 0.2)),
                         float(rng.uniform(0.6, 1.5)), obj["ring"])
    regions = int(background.max()) + 1
    levels = rng.uniform(0, 1, regions + 1).astype(np.float32)
    local = float(np.median(levels[background[query_mask]])) if query_mask.any() else 0.5
    if abs(levels[-1] - local) < 0.15:                       # the object must differ from what surrounds it
        levels[-1] = np.clip(local + np.sign(rng.random() - 0.5) * rng.uniform(0.15, 0.5), 0, 1)
    texture = 0.15 * _smooth_noise(rng, size, float(rng.uniform(1, 4))) * float(rng.random())
    if vanish and rng.random() < vanish:                     # the object left the query frame
        query_mask = np.zeros_like(query_mask)
    query = _render(rng, background, query_mask, levels, texture)
    jitter = levels + rng.normal(0, 0.03, levels.shape).astype(np.float32)
    painted = _render(rng, background, painted_mask, jitter, texture)
    # the painted frame and its mask moved together by a smooth deformation
    strength = float(rng.uniform(0.3, 1.5))
    painted, painted_mask = deform(rng, painted, painted_mask, strength)
    return painted, painted_mask, query, query_mask
