"""Self-supervised correspondence (Sli2Vol-style) as the carrier's field: train, then score.

Sli2Vol (Yeung et al., MICCAI 2021) learns an affinity between neighbouring frames without labels,
by reconstructing one frame from the other, and carries masks with it. Here the learned affinity
gives a displacement (its soft argmax inside a local window), so it plugs into the same carriers as
the registration peers (``WarpPropagator``: frame by frame, or anchored to the painted frame) and is
compared with DIS in one run. Issue 12's untried direction, measured::

    python tools/sli2vol_probe.py train --data ../shared/data --out runs/sli2vol.pt --steps 1500
    python tools/sli2vol_probe.py score --checkpoint runs/sli2vol.pt \\
        --cases ../shared/data/acdc/sequences --split-file ../shared/data/acdc/splits.csv --split val

Training pairs: neighbouring slices of ACDC ``train`` and smooth-motion cines animated from the 2D
sets' ``train`` images (:mod:`cineprop.smooth_motion`); no label is read for training.

Shapes: frames ``B×1×S×S`` (``S`` = ``SIZE``), features ``B×C×S×S`` (unit length per pixel),
affinity ``B×K×S×S`` over the ``K = (2R+1)²`` offsets of the window.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cineprop.baselines import DisPropagator, WarpPropagator
from cineprop.evaluate import evaluate, find_cases
from cineprop.flow import Field
from cineprop.propagation import finish
from cineprop.smooth_motion import SmoothMotion, animate
from cineprop.support import nearest
from cineprop.transforms import to_uint8
from cineprop.training.data import IMAGE_SETS, load_cine_set, load_image_set, read_split

SIZE, CROP, RADIUS, TAU = 128, 64, 6, 0.05
OFFSETS = [(dy, dx) for dy in range(-RADIUS, RADIUS + 1) for dx in range(-RADIUS, RADIUS + 1)]


class Encoder(torch.nn.Module):
    """Per-pixel features at full working resolution; dilations reach ±15 px of context."""

    def __init__(self, width: int = 24):
        super().__init__()
        layers, channels = [], 1
        for dilation in (1, 2, 4, 8, 1):
            layers += [torch.nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation),
                       torch.nn.GroupNorm(4, width), torch.nn.ReLU(inplace=True)]
            channels = width
        layers.append(torch.nn.Conv2d(width, width, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` sampled at ``(y + dy, x + dx)``, border replicated (``B×C×H×W``)."""
    padded = F.pad(x, (RADIUS, RADIUS, RADIUS, RADIUS), mode="replicate")
    h, w = x.shape[-2:]
    return padded[..., RADIUS + dy: RADIUS + dy + h, RADIUS + dx: RADIUS + dx + w]


def affinity(fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """Softmax over the window of the features' cosine similarity: ``B×K×H×W``."""
    logits = torch.stack([(fixed * shifted(moving, dy, dx)).sum(1) for dy, dx in OFFSETS], dim=1)
    return torch.softmax(logits / TAU, dim=1)


def reconstruct(weights: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """The fixed frame rebuilt from ``moving`` (``B×1×H×W``) through the affinity."""
    return sum(weights[:, k:k + 1] * shifted(moving, dy, dx) for k, (dy, dx) in enumerate(OFFSETS))


def displacement(weights: torch.Tensor) -> torch.Tensor:
    """Soft argmax of the window offsets: ``B×2×H×W`` (dx, dy) in working pixels."""
    offsets = torch.tensor([[dx, dy] for dy, dx in OFFSETS], dtype=weights.dtype)
    return torch.einsum("bkhw,kc->bchw", weights, offsets)


def training_pairs(data: Path, seed: int) -> list[np.ndarray]:
    """Stacks ``S×S×T`` float32 in [0, 1] whose neighbouring frames form the training pairs."""
    rng = np.random.default_rng(seed)
    acdc = data / "acdc"
    stacks = list(load_cine_set(acdc / "sequences", read_split(acdc / "splits.csv", "train")).frames)
    for name in IMAGE_SETS:
        images = load_image_set(data / name, "train")
        for i in rng.permutation(len(images))[:40]:
            label = images.masks[i].astype(np.uint8)
            stacks.append(animate(images.images[i], label, rng, SmoothMotion(frames=12))[0])
    return [np.stack([cv2.resize(s[:, :, t], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                      for t in range(s.shape[2])], axis=-1) for s in stacks]


def batch(rng: np.random.Generator, stacks: list[np.ndarray], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random neighbouring pairs (either order, random flips, the same ``CROP``² window of
    both): two ``B×1×CROP×CROP`` tensors (the encoder is convolutional: it runs at ``S``² later)."""
    fixed, moving = [], []
    for _ in range(size):
        stack = stacks[rng.integers(len(stacks))]
        t = int(rng.integers(stack.shape[2] - 1))
        y, x = rng.integers(SIZE - CROP + 1, size=2)
        a, b = stack[y:y + CROP, x:x + CROP, t], stack[y:y + CROP, x:x + CROP, t + 1]
        if rng.random() < 0.5:
            a, b = b, a
        if rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        gamma = float(np.exp(rng.uniform(-0.4, 0.4)))
        fixed.append(np.clip(a, 0, 1) ** gamma)
        moving.append(np.clip(b, 0, 1) ** gamma)
    as_tensor = lambda xs: torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))  # noqa: E731
    return as_tensor(fixed), as_tensor(moving)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    stacks = training_pairs(Path(args.data), args.seed)
    encoder = Encoder()
    optimiser = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    bar = tqdm(range(args.steps), desc="train correspondence")
    for step in bar:
        fixed, moving = batch(rng, stacks, args.batch)
        weights = affinity(encoder(fixed), encoder(moving))
        loss = (reconstruct(weights, moving) - fixed).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    torch.save({"encoder": encoder.state_dict(), "steps": args.steps}, args.out)


class CorrespondenceField(Field):
    """Displacements from the learned affinity, computed at ``SIZE``² and resized to the cine."""

    def __init__(self, frames: np.ndarray, encoder: Encoder):
        super().__init__()
        self.frames8 = to_uint8(frames)
        self.encoder = encoder

    def frame(self, i: int) -> np.ndarray:
        return self.frames8[:, :, i].astype(np.float32)

    @torch.no_grad()
    def pair(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        h, w = fixed.shape
        small = lambda im: torch.from_numpy(  # noqa: E731
            cv2.resize(im / 255.0, (SIZE, SIZE), interpolation=cv2.INTER_AREA)[None, None].astype(np.float32))
        d = displacement(affinity(self.encoder(small(fixed)), self.encoder(small(moving))))[0].numpy()
        d = np.stack([cv2.resize(d[c], (w, h), interpolation=cv2.INTER_LINEAR) for c in range(2)], axis=-1)
        return (d * np.array([w / SIZE, h / SIZE], np.float32)).astype(np.float32)


class CorrespondencePropagator(WarpPropagator):
    """The learned field carried like every registration peer (``anchor`` as theirs)."""

    name = "sli2vol"

    def __init__(self, encoder: Encoder, **options):
        super().__init__(**options)
        self.encoder = encoder

    def make_field(self, frames: np.ndarray) -> CorrespondenceField:
        return CorrespondenceField(frames, self.encoder)


class AffinityPropagator:
    """Sli2Vol's own carrying: each frame's mask is the previous frame's, copied through the learned
    affinity (``A m``: every pixel a weighted mean of the window's mask values), from the nearest
    painted frame; at ``SIZE``² and resized to the cine. No drift check."""

    name = "sli2vol affinity"

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    @torch.no_grad()
    def propagate(self, cine, support):
        start = time.perf_counter()
        h, w, t = cine.shape
        frames8 = to_uint8(cine.frames)
        small = lambda a: torch.from_numpy(  # noqa: E731
            cv2.resize(a.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA)[None, None])
        features = [self.encoder(small(frames8[:, :, i] / 255.0)) for i in range(t)]
        probabilities = {}
        for label in support.labels:
            prob = np.zeros((h, w, t), np.float32)
            carried = {}                                        # (painted frame, frame) → 1×1×S×S
            for i in sorted(range(t), key=lambda f: abs(f - nearest(support.frames_of(label), f))):
                painted = nearest(support.frames_of(label), i)
                step = 1 if i > painted else -1
                if i == painted:
                    carried[painted, i] = small(support.masks[label][painted])
                else:
                    weights = affinity(features[i], features[i - step])
                    carried[painted, i] = reconstruct(weights, carried[painted, i - step])
                prob[:, :, i] = cv2.resize(carried[painted, i][0, 0].numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
            probabilities[label] = prob
        return finish(probabilities, np.ones(t, np.float32), support, time.perf_counter() - start)


def score(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    encoder = Encoder()
    encoder.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["encoder"])
    encoder.eval()
    cases = find_cases(args.cases, args.split_file, args.split)[: args.limit]
    rows = [("sli2vol affinity", AffinityPropagator(encoder)), ("sli2vol", CorrespondencePropagator(encoder)),
            ("sli2vol anchored", CorrespondencePropagator(encoder, anchor=True)),
            ("dis", DisPropagator()), ("dis anchored", DisPropagator(anchor=True))]
    print("| carrier | mean Dice | Dice per label | s/frame |\n|---|---|---|---|")
    for name, propagator in rows:
        report = evaluate(cases, propagator, args.support, progress=False)
        labels = " / ".join(f"{v['dice']:.3f}" for v in report["per_label"].values())
        print(f"| {name} | {report['mean_dice']:.3f} | {labels} | {1.0 / report['frames_per_second']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    t = verbs.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    s = verbs.add_parser("score")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--cases", required=True)
    s.add_argument("--split-file")
    s.add_argument("--split", default="val")
    s.add_argument("--support", default="first")
    s.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    train(args) if args.verb == "train" else score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
