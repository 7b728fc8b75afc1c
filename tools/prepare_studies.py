#!/usr/bin/env python
"""Prepare a MONAI Label studies folder from labelled cines, with a painted support per study.

    python tools/prepare_studies.py data/sample .run/studies [--support middle] [--shots 2]

For every ``ID.nii.gz`` with a ground truth ``ID_label.nii.gz`` in SOURCE, copies the cine to
``DEST/ID.nii.gz`` and writes a support label ``DEST/labels/support/ID.nii.gz`` holding only the
ground truth of a few frames per structure (as if a radiologist had painted them), where the
``cineprop`` infer task looks when a request uploads no label. Ground truth itself is not copied.
Existing files are kept (the folder may hold a user's work), so running it again is safe.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from cineprop.io import read_image, read_label, stem, write_label
from cineprop.support import STRATEGIES, select_support

SUPPORT_TAG = "support"


def prepare_studies(source: str | Path, dest: str | Path, support: str = "middle", shots: int = 2,
                    ids: list[str] | None = None, with_support: bool | list[str] = True) -> list[str]:
    """Copy labelled cines from ``source`` into the studies folder ``dest`` and seed their supports.

    Args:
        support, shots: which ground-truth frames become the painted support, per structure
            (see :func:`cineprop.support.select_support`).
        ids: only these studies (default: every ``ID.nii.gz`` with an ``ID_label.nii.gz``).
        with_support: ``False`` for none, or the ids that get a support (default: all).

    Returns:
        The study ids in ``dest``'s order of preparation.
    """
    source, dest = Path(source), Path(dest)
    found = sorted(stem(p) for p in source.glob("*.nii.gz") if not stem(p).endswith("_label"))
    found = [i for i in found if (source / f"{i}_label.nii.gz").exists()]
    chosen = found if ids is None else [i for i in ids if i in found]
    if ids is not None and len(chosen) != len(ids):
        raise SystemExit(f"{source}: no labelled cine for {sorted(set(ids) - set(found))}")
    (dest / "labels" / SUPPORT_TAG).mkdir(parents=True, exist_ok=True)
    for image_id in chosen:
        image = dest / f"{image_id}.nii.gz"
        if not image.exists():
            shutil.copyfile(source / f"{image_id}.nii.gz", image)
        wanted = with_support if isinstance(with_support, bool) else image_id in with_support
        target = dest / "labels" / SUPPORT_TAG / f"{image_id}.nii.gz"
        if wanted and not target.exists():
            volume = read_image(image)
            truth = read_label(source / f"{image_id}_label.nii.gz", like=volume).array
            painted = np.zeros_like(truth)
            chosen_support = select_support(truth, support, shots)
            for frame in chosen_support.frames:
                painted[:, :, frame] = chosen_support.label_array(frame)
            write_label(target, painted, volume)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder with ID.nii.gz + ID_label.nii.gz pairs (e.g. data/sample)")
    parser.add_argument("dest", help="studies folder for `monailabel start_server --studies`")
    parser.add_argument("--support", choices=STRATEGIES, default="middle", help="which frames are painted")
    parser.add_argument("--shots", type=int, default=2, help="painted frames per structure")
    args = parser.parse_args(argv)
    ids = prepare_studies(args.source, args.dest, args.support, args.shots)
    print(f"{args.dest}: {len(ids)} studies with a support in labels/{SUPPORT_TAG}/ ({', '.join(ids)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
