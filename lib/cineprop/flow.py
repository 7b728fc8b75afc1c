"""Dense optical flow between frames and backward warping (OpenCV Farnebäck or DIS).

Convention: ``flow = dense_flow(target, source)`` is an ``H×W×2`` array such that
``target[y, x] ≈ source[y + flow[y, x, 1], x + flow[y, x, 0]]``, so ``warp(source_mask, flow)``
brings a mask of ``source`` onto ``target`` (backward warping, no holes). :class:`Field` caches
the displacements of one cine (frame to frame, and anchored to a painted frame) for every carrier;
:func:`anchored_carry` carries a painted mask with them and :func:`registration_match` says how
well the moved painted frame matches a query frame around the carried mask.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from cineprop.errors import CinepropError
from cineprop.roi import bounding_box
from cineprop.transforms import to_uint8

#: Farnebäck settings: 4 pyramid levels reach ~30 px motion at 256², the window smooths speckle.
FARNEBACK = dict(pyr_scale=0.5, levels=4, winsize=21, iterations=4, poly_n=7, poly_sigma=1.5, flags=0)


#: DIS (Kroeger et al., ECCV 2016) settings by flow method name, on top of OpenCV's MEDIUM preset
#: (patch search on a coarse-to-fine pyramid plus variational refinement; a few ms per 256² pair,
#: sharper at edges than Farnebäck). ``dis``: the preset as is (finest level at half resolution,
#: 8-px patches every 3 px, 5 refinement iterations). ``dis_fine``: down to full resolution with
#: 16-px patches every 8 px and 10 refinement iterations, about 5× the time per pair; chosen on ACDC
#: val and the smooth-motion tuning set (docs/benchmarks.md, "A finer DIS carrier").
DIS_SETTINGS: dict[str, dict[str, int]] = {
    "dis": {},
    "dis_fine": dict(FinestScale=0, PatchSize=16, PatchStride=8, VariationalRefinementIterations=10),
}

#: Flow algorithms by name.
FLOW_METHODS = ("farneback", *DIS_SETTINGS)


def dense_flow(target: np.ndarray, source: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Flow from ``target`` to ``source`` (both ``H×W`` uint8): ``H×W×2`` float32 (dx, dy)."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(target, source, None, **FARNEBACK)
    if method in DIS_SETTINGS:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        for setting, value in DIS_SETTINGS[method].items():
            getattr(dis, f"set{setting}")(value)
        return dis.calc(target, source, None)
    raise CinepropError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(x, y)``, each ``H×W`` float32 (read-only, shared by every warp of that size)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` (``H×W`` float) at ``x + flow``: bilinear, border replicated."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(np.asarray(image, np.float32), gx + flow[..., 0], gy + flow[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The displacement "follow ``inner``, then ``outer``": ``x ↦ inner(x) + outer(x + inner(x))``.

    Both ``H×W×2`` (dx, dy) in the convention above; ``compose(d_st, d_ts')`` brings frame ``s``
    onto ``t'`` through ``t`` with one resampling of whatever is warped by the result.
    """
    return inner + np.stack([warp(outer[..., 0], inner), warp(outer[..., 1], inner)], axis=-1)


class Field:
    """Cached displacements between the frames of one cine; the base of every carrier's field.

    Subclasses give :meth:`frame` (frame ``i`` as ``H×W`` float32 in the field's own intensity
    scale) and :meth:`pair` (the ``H×W×2`` displacement that brings an image ``moving`` onto
    ``fixed``, both in that scale). On top of them:

    * ``step(t, s)``: frame ``s`` onto frame ``t`` (``s = t ± 1``), computed once.
    * ``anchored(painted, i)``: frame ``painted`` onto frame ``i`` by *anchored carrying*: the
      displacement of frame ``i ∓ 1`` followed by one step, then corrected by registering frame ``i``
      with the painted frame moved by it (a template check, as in template-update tracking: the error
      of earlier steps is measured against the painted frame and taken out instead of carried on).
      Computed once per ``(painted, i)`` and shared by every label painted on that frame.
    """

    def __init__(self):
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._anchored: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}   # (chained, anchored)

    def frame(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def pair(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step(self, t: int, s: int) -> np.ndarray:
        key = (t, s)
        if key not in self._cache:
            self._cache[key] = self.pair(self.frame(t), self.frame(s))
        return self._cache[key]

    def chained(self, painted: int, i: int) -> np.ndarray:
        """Frame ``painted`` onto frame ``i``: the anchored displacement of the frame before ``i`` (seen
        from ``painted``) followed by one step, without the template check at ``i``."""
        return self._links(painted, i)[0]

    def anchored(self, painted: int, i: int) -> np.ndarray:
        """Frame ``painted`` onto frame ``i`` (``H×W×2``; zero when ``i == painted``); see the class."""
        return self._links(painted, i)[1]

    def moved(self, painted: int, i: int) -> np.ndarray:
        """Frame ``painted`` moved onto frame ``i`` by the anchored displacement (``H×W`` float32)."""
        return warp(self.frame(painted), self.anchored(painted, i))

    def _links(self, painted: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(chained, anchored)`` from ``painted`` to ``i``, filling the missing links in order."""
        if i == painted:
            zero = np.zeros(self.frame(i).shape + (2,), np.float32)
            return zero, zero
        toward = 1 if i > painted else -1
        previous = self._links(painted, painted)[1]
        for j in range(painted + toward, i + toward, toward):
            if (painted, j) not in self._anchored:
                chained = compose(previous, self.step(j, j - toward))
                moved = warp(self.frame(painted), chained)
                self._anchored[painted, j] = chained, compose(chained, self.pair(self.frame(j), moved))
            previous = self._anchored[painted, j][1]
        return self._anchored[painted, i]

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cached displacements."""
        return (sum(f.nbytes for f in self._cache.values())
                + sum(c.nbytes + a.nbytes for c, a in self._anchored.values()))


#: :func:`flow_box`: the painted masks' bounding box grows by this share of its longer side (at least
#: ``BOX_PAD`` px) and snaps outward to multiples of ``BOX_GRID`` px, so another painted frame of the
#: same structures rarely moves it.
BOX_GROW, BOX_PAD, BOX_GRID = 0.5, 24, 32


def flow_box(masks, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The box ``(y0, y1, x0, x1)`` a boxed flow field computes in, around every painted ``H×W`` mask in
    ``masks`` (grown and snapped as :data:`BOX_GROW` says, clipped to ``shape``); ``None`` when no mask
    has a pixel (then the whole frame). A function of the painted masks only: a session and a fresh
    propagation with the same paint use the same box."""
    box = bounding_box(masks)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    pad = max(BOX_PAD, int(BOX_GROW * max(y1 - y0, x1 - x0)))
    low = lambda v: max(0, (v - pad) // BOX_GRID * BOX_GRID)  # noqa: E731
    high = lambda v, n: min(n, -(-(v + pad) // BOX_GRID) * BOX_GRID)  # noqa: E731
    return low(y0), high(y1, shape[0]), low(x0), high(x1, shape[1])


class FlowField(Field):
    """Optical flow between the frames of one cine (Farnebäck or DIS, :func:`dense_flow`), cached.

    With a ``box`` (:func:`flow_box`) every flow is computed inside it only and is zero outside: the
    painted structures and their neighbourhood at a fraction of the cost of the whole frame.
    """

    def __init__(self, frames: np.ndarray, method: str = "farneback", box: tuple[int, int, int, int] | None = None):
        """Args: frames: ``H×W×T`` intensities (any range; normalised once for the whole cine);
        method: one of :data:`FLOW_METHODS`; box: ``(y0, y1, x0, x1)`` to compute in, ``None``: everywhere."""
        if method not in FLOW_METHODS:
            raise CinepropError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
        super().__init__()
        self.frames8 = to_uint8(frames)
        self.method = method
        self.box = box

    def frame(self, i: int) -> np.ndarray:
        return self.frames8[:, :, i].astype(np.float32)

    def pair(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        as8 = lambda image: np.clip(np.rint(image), 0, 255).astype(np.uint8)  # noqa: E731
        if self.box is None:
            return dense_flow(as8(fixed), as8(moving), self.method)
        y0, y1, x0, x1 = self.box
        flow = np.zeros(fixed.shape + (2,), np.float32)
        flow[y0:y1, x0:x1] = dense_flow(as8(fixed[y0:y1, x0:x1]), as8(moving[y0:y1, x0:x1]), self.method)
        return flow

    @property
    def nbytes(self) -> int:
        """Bytes held: the 8-bit frames and the flows computed so far."""
        return self.frames8.nbytes + self.cached_bytes

    def consistency(self, t: int, s: int, tolerance: float = 1.5) -> np.ndarray:
        """``H×W`` bool: where the forward-backward check says the ``t ← s`` flow is reliable.

        A pixel passes when following the flow to ``s`` and back lands within
        ``tolerance + 5 % of the motion`` pixels of where it started.
        """
        f_ts = self.step(t, s)
        f_st = self.step(s, t)
        back = np.stack([warp(f_st[..., 0], f_ts), warp(f_st[..., 1], f_ts)], axis=-1)
        error = np.linalg.norm(f_ts + back, axis=-1)
        motion = np.linalg.norm(f_ts, axis=-1) + np.linalg.norm(back, axis=-1)
        return error <= tolerance + 0.05 * motion


#: the pixels around a carried mask that :func:`registration_match` compares: a 9×9 dilation of it
MATCH_BAND = np.ones((9, 9), np.uint8)


def match_band(carried: np.ndarray) -> np.ndarray:
    """``H×W`` bool: the carried mask (probability > 0.5) dilated by :data:`MATCH_BAND`."""
    return cv2.dilate((carried > 0.5).astype(np.uint8), MATCH_BAND) > 0


def registration_match(field, painted: int, i: int, band: np.ndarray) -> float:
    """How well the painted frame, moved onto frame ``i`` by the anchored displacement, matches frame
    ``i`` around the carried mask (``band``: :func:`match_band`): their normalised cross-correlation
    in [−1, 1] over the band (1 on the painted frame itself, or when fewer than 10 pixels remain).

    Where motion alone explains the frame (a smooth cine) the moved painted frame matches it closely
    (median 0.96 on the smooth-motion tuning set); where anatomy changed (ACDC's far slices) it does
    not (median 0.48 on the frames with Dice < 0.7, 0.69 on the others), whatever the carried mask.
    """
    if i == painted:
        return 1.0
    return band_ncc(field.frame(i), field.moved(painted, i), band)


def band_ncc(frame: np.ndarray, moved: np.ndarray, band: np.ndarray) -> float:
    """Normalised cross-correlation of two ``H×W`` images over ``band`` (1 when it has < 10 pixels)."""
    if band.sum() < 10:
        return 1.0
    a, b = frame[band], moved[band]
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))


def anchored_carry(field, mask: np.ndarray, painted: int, i: int) -> np.ndarray:
    """The painted ``mask`` (``H×W`` float) on frame ``i``: the mean of the chained and the anchored
    warps (:class:`cineprop.flow.Field`), each one resampling of the painted mask.

    Where the template check moves the boundary, the two disagree and the mean is near 0.5, so the
    carried mask's crispness (its confidence past the last painted frame) drops there. DIS on the
    tuning sets (``cineprop evaluate --method dis --option anchor=true``, docs/benchmarks.md): ACDC
    val 0.694 warp by warp → 0.698, smooth-motion tuning set 0.915 → 0.972. The anchored warp alone
    (a throw-away experiment, not an option) matched this mean on smooth motion and lost on ACDC val.
    """
    return 0.5 * (warp(mask, field.chained(painted, i)) + warp(mask, field.anchored(painted, i)))
