"""Relearning over a collection of cines (``cineprop relearn DATA_DIR --out CKPT``).

The support of each cine is what was painted on it: the non-empty frames of ``ID_label.*`` beside
the image (``support_from="labels"``) or of ``DIR/ID_label.*`` / ``DIR/ID.*`` in a support folder;
``frames="first"|"middle"`` with ``shots`` keeps only that many painted frames per label (to
emulate sparse annotation on fully labelled data). Cines are visited in a seeded random order,
``steps_per_cine`` steps each, with one student and one optimiser throughout, for
``config.steps`` steps (no early stop: the loss of different cines is not one curve). ``OUT.last.pt``
(student, optimiser, step, random states, loss history) is written every ``save_every`` steps, so
an interrupted run resumes where it stopped; the result is a checkpoint of kind ``relearn`` that
stores the image weights for stage 1 and loads with :func:`cineprop.checkpoints.load_model`.

Entry points: :func:`relearn_collection` (a folder, ``cineprop relearn``) and :func:`relearn_pairs`
(explicit ``(image, painted label)`` file pairs, e.g. the MONAI Label app's datastore). Both start
from an image checkpoint or from the image weights a ``relearn`` checkpoint stores (relearning is
redone from the image model, never stacked on an earlier relearning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import load_image_model, read_checkpoint, save_checkpoint
from cineprop.errors import InputError, where
from cineprop.evaluate import IMAGE_SUFFIXES, LABEL_SUFFIX
from cineprop.io import labels_for, load_cines, read_label, stem
from cineprop.relearn.clip import build_clip, run_stage1
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.relearner import ConsistencyRelearner, trainable
from cineprop.support import SupportSet, select_support


@dataclass(frozen=True)
class CineSource:
    """One image file and the label file holding its painted frames."""

    id: str
    image: Path
    painted: Path


def find_sources(data_dir: str | Path, support_from: str = "labels", split_file: str | Path | None = None,
                 split: str | None = None) -> list[CineSource]:
    """Images in ``data_dir`` with their painted label files (see the module docstring).

    ``split_file``/``split``: keep only the sequences of that split (a CSV ``sequence,split``).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(where(root, "data folder not found"))
    support_dir = root if support_from == "labels" else Path(support_from)
    if not support_dir.is_dir():
        raise InputError(where(support_dir, "support folder not found"))
    out = []
    for path in sorted(root.iterdir()):
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or path.name[: -len(suffix)].endswith(LABEL_SUFFIX):
            continue
        case = path.name[: -len(suffix)]
        names = [f"{case}{LABEL_SUFFIX}{s}" for s in IMAGE_SUFFIXES]
        if support_dir != root:
            names += [f"{case}{s}" for s in IMAGE_SUFFIXES]
        painted = next((support_dir / n for n in names if (support_dir / n).exists()), None)
        if painted is not None:
            out.append(CineSource(case, path, painted))
    if split_file is not None:
        from cineprop.training.data import read_split

        wanted = set(read_split(split_file, split))
        out = [source for source in out if source.id in wanted]
    if not out:
        raise InputError(where(support_dir, "no image with a painted label file found"))
    return out


def load_supports(source: CineSource, frames: str = "all", shots: int = 1) -> Iterator[tuple]:
    """``(cine, support)`` for each cine of a source that has painted frames."""
    volume, cines = load_cines(source.image)
    painted = read_label(source.painted, like=volume)
    for cine in cines:
        labels = labels_for(painted, cine)
        if not labels.any():
            continue
        support = SupportSet.from_labels(labels) if frames == "all" else select_support(labels, frames, shots)
        yield cine, support


def sources_from_pairs(pairs: Sequence[tuple[str | Path, str | Path]]) -> list[CineSource]:
    """:class:`CineSource` for explicit ``(image file, painted label file)`` pairs (ids: image stems)."""
    out = []
    for image, painted in pairs:
        image, painted = Path(image), Path(painted)
        for path in (image, painted):
            if not path.is_file():
                raise InputError(where(path, "file not found"))
        out.append(CineSource(stem(image), image, painted))
    if not out:
        raise InputError("no (image, painted label) pairs to relearn on")
    return out


def relearn_collection(data_dir: str | Path, out: str | Path, checkpoint: str | None = None,
                       config: RelearnConfig = RelearnConfig(), support_from: str = "labels",
                       frames: str = "all", shots: int = 1, steps_per_cine: int = 4, save_every: int = 50,
                       resume: bool = True, limit: int | None = None, device: str = "cpu",
                       progress: bool = True, split_file: str | Path | None = None, split: str | None = None) -> dict:
    """Relearn one student over every cine of ``data_dir``; write ``out`` (kind ``relearn``)."""
    sources = find_sources(data_dir, support_from, split_file, split)[:limit]
    return relearn_sources(sources, out, checkpoint, config, frames, shots, steps_per_cine, save_every, resume,
                           device, progress, data={"data": str(data_dir), "split": split, "support_from": support_from})


def relearn_pairs(pairs: Sequence[tuple[str | Path, str | Path]], out: str | Path, checkpoint: str | None = None,
                  config: RelearnConfig = RelearnConfig(), steps_per_cine: int = 4, save_every: int = 50,
                  resume: bool = False, device: str = "cpu", progress: bool = True,
                  on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Relearn over explicit ``(image, painted label)`` file pairs (every painted frame is support).

    The MONAI Label train task ``cineprop_relearn`` calls this with the datastore's studies and
    their saved support (or final) labels. Returns the summary of :func:`relearn_sources`.
    """
    sources = sources_from_pairs(pairs)
    return relearn_sources(sources, out, checkpoint, config, "all", 1, steps_per_cine, save_every, resume, device,
                           progress, data={"data": f"{len(sources)} (image, label) pairs",
                                           "studies": [s.id for s in sources]}, on_step=on_step)


def relearn_sources(sources: Sequence[CineSource], out: str | Path, checkpoint: str | None = None,
                    config: RelearnConfig = RelearnConfig(), frames: str = "all", shots: int = 1,
                    steps_per_cine: int = 4, save_every: int = 50, resume: bool = True, device: str = "cpu",
                    progress: bool = True, data: dict | None = None,
                    on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Relearn one student over ``sources`` for ``config.steps`` steps; write ``out`` (kind ``relearn``).

    Args:
        checkpoint: image or relearn checkpoint to start from (``None``: the bundled one).
        data: what the sources are, stored in the checkpoint's meta.
        on_step: called after every step with ``(step, total steps, loss terms)`` (progress logs).

    Raises:
        InputError: no source has a painted frame.
    """
    out = Path(out)
    last = out.with_name(out.name.removesuffix(".pt") + ".last.pt")
    teacher, payload = load_image_model(checkpoint, device)
    relearner = ConsistencyRelearner(teacher, config)
    student = relearner.new_student()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    step, history, order, position = 0, [], [], 0
    with trainable(student, config.train) as params:
        optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if resume and last.exists():
            saved = read_checkpoint(last)
            student.load_state_dict(saved["state_dict"])
            extra = saved["extra_state"]
            optimiser.load_state_dict(extra["optimiser"])
            step, history, order, position = extra["step"], extra["history"], extra["order"], extra["position"]
            rng.bit_generator.state = extra["rng"]
            torch.set_rng_state(extra["torch_rng"])
        meta = {"relearn_config": config.to_dict(), **(data or {}), "frames": frames, "shots": shots,
                "steps_per_cine": steps_per_cine,
                "image_checkpoint": str(checkpoint) if checkpoint else "bundled",
                "image_meta": payload.get("meta", {})}
        stage1_state = {k: v.detach().cpu() for k, v in teacher.state_dict().items()}

        def save(path: Path, final: bool) -> None:
            extra = {"stage1_state_dict": stage1_state}
            if not final:
                extra.update(optimiser=optimiser.state_dict(), step=step, history=history, order=order,
                             position=position, rng=rng.bit_generator.state, torch_rng=torch.get_rng_state())
            save_checkpoint(path, student, "relearn", dict(meta, steps=step, history_tail=history[-5:]), extra)

        bar = tqdm(total=config.steps, initial=step, desc="relearn", disable=not progress, dynamic_ncols=True)
        start, cines_seen = time.time(), 0
        visited_in_pass, whole_pass = 0, False  # a resumed run starts in the middle of a pass
        while step < config.steps:
            if position >= len(order):
                if whole_pass and not visited_in_pass:
                    raise InputError(f"nothing to relearn on: no painted frame in {len(sources)} label file(s)")
                order, position = [int(i) for i in rng.permutation(len(sources))], 0
                visited_in_pass, whole_pass = 0, True
            source = sources[order[position]]
            position += 1
            for cine, support in load_supports(source, frames, shots):
                visited_in_pass += 1
                session, stage1 = run_stage1(teacher, cine, support, device=device)
                state = relearner.prepare(build_clip(session, stage1, config, training=True))
                cines_seen += 1
                for _ in range(min(steps_per_cine, config.steps - step)):
                    loss, terms = relearner.step(student, state, rng)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
                    optimiser.step()
                    step += 1
                    history.append(dict(terms, cine=cine.name))
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
                    if on_step is not None:
                        on_step(step, config.steps, terms)
                    if step % save_every == 0:
                        save(last, final=False)
                if step >= config.steps:
                    break
        bar.close()
        save(last, final=False)
        save(out, final=True)
    return {"out": str(out), "last": str(last), "steps": step, "cines": len(sources), "cines_visited": cines_seen,
            "minutes": (time.time() - start) / 60.0, "final_loss": history[-1] if history else None}
