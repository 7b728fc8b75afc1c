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

One loop, :func:`run_collection`, serves one process and data-parallel workers alike: a
:class:`Communicator` says which shard of the images this process relearns on and averages the
gradients of each step over the workers (:class:`LocalCommunicator`: one process, no-op;
``cineprop.relearn.distributed``: Ray Train workers over ``torch.distributed``). Every worker
keeps an identical student and optimiser; rank 0 writes the checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import load_image_model, read_checkpoint, save_checkpoint
from cineprop.errors import InputError, where
from cineprop.evaluate import IMAGE_SUFFIXES, LABEL_SUFFIX
from cineprop.io import labels_for, load_cines, read_label
from cineprop.io.cine import stem
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


@dataclass(frozen=True)
class CollectionJob:
    """Everything one collection relearning run needs (picklable: it travels to Ray workers)."""

    data_dir: Path
    out: Path
    checkpoint: str | None = None
    config: RelearnConfig = field(default_factory=RelearnConfig)
    support_from: str = "labels"
    frames: str = "all"
    shots: int = 1
    steps_per_cine: int = 4
    save_every: int = 50
    resume: bool = True
    limit: int | None = None
    device: str = "cpu"
    split_file: Path | None = None
    split: str | None = None
    #: explicit ``(image, painted label)`` file pairs instead of ``data_dir``'s images
    pairs: tuple[tuple[Path, Path], ...] | None = None

    @property
    def last(self) -> Path:
        """The resumable state, ``OUT.last.pt``."""
        return self.out.with_name(self.out.name.removesuffix(".pt") + ".last.pt")

    def absolute(self) -> "CollectionJob":
        """The same job with absolute paths (workers do not share the driver's working folder)."""
        resolve = lambda p: None if p is None else Path(p).expanduser().resolve()  # noqa: E731
        support = self.support_from if self.support_from == "labels" else str(resolve(self.support_from))
        checkpoint = None if self.checkpoint is None else str(resolve(self.checkpoint))
        pairs = None if self.pairs is None else tuple((resolve(i), resolve(p)) for i, p in self.pairs)
        return replace(self, data_dir=resolve(self.data_dir), out=resolve(self.out), checkpoint=checkpoint,
                       support_from=support, split_file=resolve(self.split_file), pairs=pairs)

    def sources(self) -> list[CineSource]:
        if self.pairs is not None:
            return sources_from_pairs(self.pairs)[:self.limit]
        return find_sources(self.data_dir, self.support_from, self.split_file, self.split)[:self.limit]

    def describe(self, sources: Sequence[CineSource]) -> dict:
        """What the run learned from, for the checkpoint's meta."""
        if self.pairs is not None:
            return {"data": f"{len(sources)} (image, label) pairs", "studies": [s.id for s in sources]}
        return {"data": str(self.data_dir), "split": self.split, "support_from": self.support_from}


class Communicator:
    """How the workers of one run talk: rank, world size and the three collective operations.

    This base class is the single-process case (``world == 1``): every operation is local.
    """

    rank, world = 0, 1

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each ``p.grad`` by its mean over the workers (``None`` where no worker has one)."""

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every worker, by rank (every worker gets the list)."""
        return [obj]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every worker's ``module`` state equal to rank 0's."""


LocalCommunicator = Communicator


def _sampling_state(rank: int, seed: int, extra: dict | None, world: int, images: int
                    ) -> tuple[np.random.Generator, list, int]:
    """This worker's random generator, visiting order of its ``images`` and position (fresh, or from ``extra``)."""
    rng = np.random.default_rng(seed if rank == 0 else [seed, rank])
    if extra is None:
        return rng, [], 0
    ranks = extra.get("ranks") or [{k: extra[k] for k in ("order", "position", "rng", "torch_rng")}]  # pre-Ray files
    if len(ranks) != world:  # a different number of workers: the model resumes, the sampling starts afresh
        return np.random.default_rng([seed, rank, extra["step"]]), [], 0
    mine = ranks[rank]
    rng.bit_generator.state = mine["rng"]
    torch.set_rng_state(mine["torch_rng"])
    order = [int(i) for i in mine["order"]]
    if any(i >= images for i in order):      # fewer images than when it was saved (--limit): a new pass
        return rng, [], 0
    return rng, order, int(mine["position"])


def run_collection(job: CollectionJob, comm: Communicator = LocalCommunicator(),
                   on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Relearn on this worker's shard (``sources[rank::world]``) in step with the other workers.

    ``on_step(step, terms)`` is called after each optimisation step (rank 0 wires it to a progress
    bar). Returns this worker's summary; every worker returns the same ``steps`` and final loss.
    """
    config, out, last = job.config, job.out, job.last
    sources = job.sources()
    if len(sources) < comm.world:
        raise InputError(where(job.data_dir, f"{len(sources)} image(s) for {comm.world} workers: "
                                             f"use at most {len(sources)} workers"))
    shard = sources[comm.rank::comm.world]
    teacher, payload = load_image_model(job.checkpoint, job.device)    # a relearn checkpoint: its image weights
    relearner = ConsistencyRelearner(teacher, config)
    torch.manual_seed(config.seed)
    student = relearner.new_student()
    saved = read_checkpoint(last) if job.resume and last.exists() else None
    extra = saved["extra_state"] if saved else None
    step, history = (extra["step"], extra["history"]) if extra else (0, [])
    visited = list(extra.get("visited", [])) if extra else []
    if len(visited) != comm.world:     # a fresh run, or another number of workers: the count goes on on rank 0
        visited = [sum(visited)] + [0] * (comm.world - 1)
    with trainable(student, config.train) as params:
        optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if saved:
            student.load_state_dict(saved["state_dict"])
            optimiser.load_state_dict(extra["optimiser"])
        rng, order, position = _sampling_state(comm.rank, config.seed, extra, comm.world, len(shard))
        comm.broadcast_module(student)          # one starting point for every worker, whatever happened before
        meta = {"relearn_config": config.to_dict(), **job.describe(sources), "frames": job.frames, "shots": job.shots,
                "steps_per_cine": job.steps_per_cine, "workers": comm.world,
                "image_checkpoint": str(job.checkpoint) if job.checkpoint else "bundled",
                "image_meta": payload.get("meta", {})}
        stage1_state = {k: v.detach().cpu() for k, v in teacher.state_dict().items()}

        def save(path: Path, final: bool) -> None:  # collective: every worker calls it at the same step
            mine = dict(order=order, position=position, rng=rng.bit_generator.state, torch_rng=torch.get_rng_state())
            ranks, seen = comm.gather(mine), comm.gather(visited[comm.rank])
            if comm.rank != 0:
                return
            extra_state = {"stage1_state_dict": stage1_state}
            if not final:
                extra_state.update(optimiser=optimiser.state_dict(), step=step, history=history, ranks=ranks,
                                   visited=seen, workers=comm.world)
            save_checkpoint(path, student, "relearn", dict(meta, steps=step, history_tail=history[-5:]), extra_state)

        start, first_step, preparing = time.time(), step, 0.0
        stepped_this_pass = True
        while step < config.steps:
            if position >= len(order):
                if order and not stepped_this_pass:
                    names = ", ".join(s.id for s in shard[:3])
                    raise InputError(where(job.data_dir if job.pairs is None else names,
                                           f"nothing to relearn on: no painted frame in {len(shard)} label file(s)"))
                order, position, stepped_this_pass = [int(i) for i in rng.permutation(len(shard))], 0, False
            source = shard[order[position]]
            position += 1
            loading = time.time()
            for cine, support in load_supports(source, job.frames, job.shots):
                session, stage1 = run_stage1(teacher, cine, support, device=job.device)
                state = relearner.prepare(build_clip(session, stage1, config, training=True))
                preparing += time.time() - loading
                visited[comm.rank] += 1
                stepped_this_pass = True
                for _ in range(min(job.steps_per_cine, config.steps - step)):
                    loss, terms = relearner.step(student, state, rng)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    comm.average_gradients(params)
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
                    optimiser.step()
                    step += 1
                    entry = _mean_terms(comm.gather(dict(terms, cine=cine.name)))
                    history.append(entry)
                    if on_step is not None:
                        on_step(step, entry)
                    if step % job.save_every == 0:
                        save(last, final=False)
                if step >= config.steps:
                    break
                loading = time.time()
        seconds = time.time() - start
        _check_in_sync(comm, student)
        visited = comm.gather(visited[comm.rank])
        save(last, final=False)
        save(out, final=True)
    ran = step - first_step
    return {"out": str(out), "last": str(last), "steps": step, "steps_run": ran, "cines": len(sources),
            "workers": comm.world, "cines_visited": int(sum(visited)), "minutes": seconds / 60.0,
            "seconds_per_step": seconds / ran if ran else None, "prepare_seconds": preparing,
            "final_loss": history[-1] if history else None}


def _mean_terms(entries: list[dict]) -> dict:
    """One history entry from every worker's: each loss term averaged, cine names joined with ``+``."""
    if len(entries) == 1:
        return entries[0]
    keys = dict.fromkeys(k for e in entries for k in e if k != "cine")
    out: dict = {k: float(np.mean([e[k] for e in entries if k in e])) for k in keys}
    out["cine"] = "+".join(e["cine"] for e in entries)
    return out


def _check_in_sync(comm: Communicator, student: torch.nn.Module) -> None:
    """Fail loudly if the workers' students drifted apart (they must stay bit-identical)."""
    if comm.world == 1:
        return
    import hashlib

    digest = hashlib.sha1()
    for value in student.state_dict().values():
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    digests = comm.gather(digest.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"data-parallel relearning: the workers' weights differ ({digests})")


def relearn_collection(data_dir: str | Path, out: str | Path, checkpoint: str | None = None,
                       config: RelearnConfig = RelearnConfig(), support_from: str = "labels",
                       frames: str = "all", shots: int = 1, steps_per_cine: int = 4, save_every: int = 50,
                       resume: bool = True, limit: int | None = None, device: str = "cpu",
                       progress: bool = True, split_file: str | Path | None = None, split: str | None = None) -> dict:
    """Relearn one student over every cine of ``data_dir`` in this process; write ``out`` (kind ``relearn``)."""
    job = CollectionJob(Path(data_dir), Path(out), checkpoint, config, support_from, frames, shots, steps_per_cine,
                        save_every, resume, limit, device, None if split_file is None else Path(split_file), split)
    with progress_bar(job, progress) as on_step:
        return run_collection(job, LocalCommunicator(), on_step)


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


def relearn_pairs(pairs: Sequence[tuple[str | Path, str | Path]], out: str | Path, checkpoint: str | None = None,
                  config: RelearnConfig = RelearnConfig(), steps_per_cine: int = 4, save_every: int = 50,
                  resume: bool = False, device: str = "cpu", progress: bool = True,
                  on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Relearn over explicit ``(image, painted label)`` file pairs (every painted frame is support).

    The MONAI Label train task ``cineprop_relearn`` calls this with the datastore's studies and
    their saved support (or final) labels. ``on_step(step, total steps, loss terms)`` after each step
    (the terms are floats; the history entry's ``cine`` name is left out).
    """
    job = CollectionJob(Path("."), Path(out), checkpoint, config, "labels", "all", 1, steps_per_cine, save_every,
                        resume, None, device, pairs=tuple((Path(i), Path(p)) for i, p in pairs))
    job.sources()                                   # missing files are an error before any model loads
    with progress_bar(job, progress) as bar:
        def step_done(step: int, terms: dict) -> None:
            bar(step, terms)
            if on_step is not None:
                on_step(step, config.steps, {k: v for k, v in terms.items() if k != "cine"})

        return run_collection(job, LocalCommunicator(), step_done)


class progress_bar:  # noqa: N801 (a context manager used like a function)
    """``with progress_bar(job, enabled) as on_step:`` a tqdm bar over the job's steps, fed by ``on_step``."""

    def __init__(self, job: CollectionJob, enabled: bool = True):
        start = 0
        if job.resume and job.last.exists() and enabled:
            start = int(read_checkpoint(job.last)["extra_state"].get("step", 0))
        self.bar = tqdm(total=job.config.steps, initial=min(start, job.config.steps), desc="relearn",
                        disable=not enabled, dynamic_ncols=True)

    def __enter__(self) -> Callable[[int, dict], None]:
        return self.update

    def update(self, step: int, terms: dict) -> None:
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items() if k != "cine"})

    def __exit__(self, *exc) -> None:
        self.bar.close()
