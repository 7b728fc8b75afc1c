"""Write the smooth-motion benchmark set: long cines animated from labelled still frames.

    python tools/make_smooth_set.py OUT [--data ../shared/data] [--acdc 8] [--per-set 4] [--frames 60] [--seed 0]
                                        [--tuning]

Sources (never training data): the middle labelled slice of the first ``--acdc`` ACDC ``test``
sequences (end-diastole, three labels) and the first ``--per-set`` held-out (``val``) images of each
2D set (hc18, busi, chasedb1; one label), at most 256 px a side. Each is animated by
:func:`cineprop.smooth_motion.animate` (periodic affine + elastic motion, noise, dropout frames) and
written as ``OUT/NAME.nii.gz`` + ``OUT/NAME_label.nii.gz`` (what ``cineprop evaluate OUT`` reads),
with ``OUT/manifest.json`` (sources, seed, dropout frames) and ``OUT/splits.csv``: split ``subset``
holds the first cine of each source (one ACDC, one per 2D set) for the slow peers, ``rest`` the others.

``--tuning`` writes the *tuning* twin on which settings are chosen (the benchmark set above is for
reporting only): ACDC ``val`` instead of ``test`` stills, the *next* ``--per-set`` held-out images of
each 2D set (none shared with the benchmark set) and seed ``--seed + 1``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cineprop.io.volume import Geometry, Volume, read_image, read_label, write_image, write_label
from cineprop.smooth_motion import SmoothMotion, animate
from cineprop.training.data import IMAGE_SETS, load_image_set, read_split

MAX_SIDE = 256


def acdc_stills(data: Path, count: int, split: str = "test") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image H×W, label H×W)``: the middle slice with all three labels, ED sequences of ``split``."""
    ids = [i for i in read_split(data / "acdc" / "splits.csv", split) if i.endswith("frame01")][:count]
    out = []
    for case in ids:
        image = read_image(data / "acdc" / "sequences" / f"{case}.nii.gz").array
        label = read_label(data / "acdc" / "sequences" / f"{case}_label.nii.gz").array
        full = [z for z in range(label.shape[2]) if len(np.unique(label[:, :, z])) == 4]
        z = full[len(full) // 2]
        out.append((f"acdc_{case}", image[:, :, z], label[:, :, z]))
    return out


def image_set_stills(data: Path, count: int, skip: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, mask)`` of held-out images ``skip .. skip + count − 1`` of each 2D set."""
    out = []
    for name in IMAGE_SETS:
        held_out = load_image_set(data / name, "val", max_side=MAX_SIDE)
        for stem, image, mask in list(zip(held_out.ids, held_out.images, held_out.masks))[skip:skip + count]:
            out.append((f"{name}_{Path(stem).stem}", image, mask.astype(np.uint8)))
    return out


def main(out: str, data: str = "../shared/data", acdc: int = 8, per_set: int = 4, frames: int = 60,
         seed: int = 0, tuning: bool = False) -> list[dict]:
    folder, root = Path(out), Path(data)
    folder.mkdir(parents=True, exist_ok=True)
    seed = seed + 1 if tuning else seed
    rng = np.random.default_rng(seed)
    motion = SmoothMotion(frames=frames)
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    manifest, sources = [], set()
    stills = acdc_stills(root, acdc, "val" if tuning else "test") + \
        image_set_stills(root, per_set, skip=per_set if tuning else 0)
    for name, image, label in stills:
        cine, labels, dropout = animate(np.clip(image, 0, 1), label, rng, motion)
        write_image(folder / f"{name}.nii.gz", cine, geometry)
        write_label(folder / f"{name}_label.nii.gz", labels, Volume(cine, geometry))
        source = name.split("_")[0]
        split = "rest" if source in sources else "subset"
        sources.add(source)
        manifest.append({"name": name, "shape": list(cine.shape), "dropout_frames": dropout, "split": split})
        print(name, cine.shape, "dropout", dropout, split, flush=True)
    (folder / "splits.csv").write_text("sequence,split\n" + "".join(f"{m['name']},{m['split']}\n" for m in manifest))
    (folder / "manifest.json").write_text(json.dumps({"seed": seed, "tuning": tuning, "motion": motion.__dict__,
                                                      "cines": manifest}, indent=1, default=list) + "\n")
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--acdc", type=int, default=8, help="ACDC test sequences to animate")
    parser.add_argument("--per-set", type=int, default=4, help="held-out images per 2D set")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tuning", action="store_true",
                        help="the tuning twin: ACDC val stills, the next held-out 2D images, seed + 1")
    a = parser.parse_args()
    main(a.out, a.data, a.acdc, a.per_set, a.frames, a.seed, a.tuning)
