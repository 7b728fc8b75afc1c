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

Entry points: :func:`relearn_collection` (a :class:`CollectionJob`, e.g. a folder from ``cineprop
relearn``) and :func:`relearn_pairs` (explicit ``(image, painted label)`` file pairs, e.g. the MONAI
Label app's datastore). Both start from an image checkpoint or from the image weights a ``relearn``
checkpoint stores (relearning is redone from the image model, never stacked on an earlier relearning).

One loop, :func:`run_collection` (a :class:`CollectionRun`: prepare, resume, step loop, save),
serves one process and data-parallel workers alike: a :class:`Communicator` says which shard of the
images this process relearns on and averages the gradients of each step over the workers
(:class:`LocalCommunicator`: one process, no-op; ``cineprop.relearn.distributed``: Ray Train workers
over ``torch.distributed``). Every worker keeps an identical student and optimiser; rank 0 writes the checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cineprop.checkpoints import load_image_model, read_checkpoint, save_checkpoint
from cineprop.errors import InputError, where
from cineprop.relearn.clip_from_stage1 import build_clip, run_stage1
from cineprop.relearn.config import RelearnConfig
from cineprop.relearn.relearner import ClipState, ConsistencyRelearner, trainable
from cineprop.relearn.sources import CineSource, find_sources, load_supports, sources_from_pairs
from cineprop.training.optim import optimiser_step


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


class CollectionRun:
    """One worker's run of a :class:`CollectionJob`: prepare, resume, step loop, save.

    :func:`run_collection` calls the phases in order. Every worker holds an identical student and
    optimiser; ``save`` is collective (every worker calls it at the same step; rank 0 writes).

    Attributes:
        step, history: optimisation steps taken (all workers together) and one loss entry per step.
        visited: cines visited per worker (this worker's count at ``visited[rank]``).
        rng, order, position: this worker's sampling: its generator, the visiting order of its
            shard and the position in it.
    """

    def __init__(self, job: CollectionJob, comm: Communicator):
        """Prepare: this worker's shard, the teacher (image weights), the relearner and a fresh student."""
        self.job, self.comm, self.config = job, comm, job.config
        self.sources = job.sources()
        if len(self.sources) < comm.world:
            raise InputError(where(job.data_dir, f"{len(self.sources)} image(s) for {comm.world} workers: "
                                                 f"use at most {len(self.sources)} workers"))
        self.shard = self.sources[comm.rank::comm.world]
        self.teacher, payload = load_image_model(job.checkpoint, job.device)  # a relearn checkpoint: its image weights
        self.relearner = ConsistencyRelearner(self.teacher, self.config)
        torch.manual_seed(self.config.seed)
        self.student = self.relearner.new_student()
        self.meta = {"relearn_config": self.config.to_dict(), **job.describe(self.sources), "frames": job.frames,
                     "shots": job.shots, "steps_per_cine": job.steps_per_cine, "workers": comm.world,
                     "image_checkpoint": str(job.checkpoint) if job.checkpoint else "bundled",
                     "image_meta": payload.get("meta", {})}
        self.stage1_state = {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}
        self.step, self.history, self.visited = 0, [], [0] * comm.world
        self.rng: np.random.Generator | None = None              # set by resume(), with order and position
        self.order, self.position = [], 0
        self.optimiser: torch.optim.Optimizer | None = None
        self.seconds = self.preparing = 0.0
        self.first_step = 0

    def resume(self, params: list[torch.nn.Parameter]) -> None:
        """Create the optimiser over ``params``; continue from ``OUT.last.pt`` when resuming and it exists."""
        job, comm, config = self.job, self.comm, self.config
        saved = read_checkpoint(job.last) if job.resume and job.last.exists() else None
        extra = saved["extra_state"] if saved else None
        if extra:
            self.step, self.history = extra["step"], extra["history"]
        visited = list(extra.get("visited", [])) if extra else []
        if len(visited) != comm.world:  # a fresh run, or another number of workers: the count goes on on rank 0
            visited = [sum(visited)] + [0] * (comm.world - 1)
        self.visited = visited
        self.optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if saved:
            self.student.load_state_dict(saved["state_dict"])
            self.optimiser.load_state_dict(extra["optimiser"])
        self.rng, self.order, self.position = _sampling_state(comm.rank, config.seed, extra, comm.world,
                                                              len(self.shard))
        comm.broadcast_module(self.student)     # one starting point for every worker, whatever happened before
        self.first_step = self.step

    def loop(self, params: list[torch.nn.Parameter], on_step: Callable[[int, dict], None] | None) -> None:
        """Visit cines of the shard in the seeded order, ``steps_per_cine`` steps each, until ``config.steps``."""
        start = time.time()
        stepped_this_pass = True
        while self.step < self.config.steps:
            if self.position >= len(self.order):
                if self.order and not stepped_this_pass:
                    names = ", ".join(s.id for s in self.shard[:3])
                    raise InputError(where(self.job.data_dir if self.job.pairs is None else names,
                                           f"nothing to relearn on: no painted frame in {len(self.shard)} label "
                                           f"file(s)"))
                self.order = [int(i) for i in self.rng.permutation(len(self.shard))]
                self.position, stepped_this_pass = 0, False
            source = self.shard[self.order[self.position]]
            self.position += 1
            stepped_this_pass |= self._relearn_on(source, params, on_step)
        self.seconds = time.time() - start

    def _relearn_on(self, source: CineSource, params: list[torch.nn.Parameter],
                    on_step: Callable[[int, dict], None] | None) -> bool:
        """The steps on each painted cine of ``source``; whether it had one."""
        job, config = self.job, self.config
        loading, any_cine = time.time(), False
        for cine, support in load_supports(source, job.frames, job.shots):
            session, stage1 = run_stage1(self.teacher, cine, support, device=job.device)
            state = self.relearner.prepare(build_clip(session, stage1, config, training=True))
            self.preparing += time.time() - loading
            self.visited[self.comm.rank] += 1
            any_cine = True
            for _ in range(min(job.steps_per_cine, config.steps - self.step)):
                self._step(state, cine.name, params, on_step)
            if self.step >= config.steps:
                break
            loading = time.time()
        return any_cine

    def _step(self, state: ClipState, cine_name: str, params: list[torch.nn.Parameter],
              on_step: Callable[[int, dict], None] | None) -> None:
        """One optimisation step in step with the other workers (gradients averaged); saves every ``save_every``."""
        loss, terms = self.relearner.step(self.student, state, self.rng)
        optimiser_step(self.optimiser, loss, params, self.comm.average_gradients)
        self.step += 1
        entry = _mean_terms(self.comm.gather(dict(terms, cine=cine_name)))
        self.history.append(entry)
        if on_step is not None:
            on_step(self.step, entry)
        if self.step % self.job.save_every == 0:
            self.save(self.job.last, final=False)

    def save(self, path: Path, final: bool) -> None:
        """Write ``path`` (collective). ``final``: the result (student and stage-1 weights); else also the state
        to resume from (optimiser, step, history, every worker's sampling state and visit count)."""
        comm = self.comm
        mine = dict(order=self.order, position=self.position, rng=self.rng.bit_generator.state,
                    torch_rng=torch.get_rng_state())
        ranks, seen = comm.gather(mine), comm.gather(self.visited[comm.rank])
        if comm.rank != 0:
            return
        extra_state = {"stage1_state_dict": self.stage1_state}
        if not final:
            extra_state.update(optimiser=self.optimiser.state_dict(), step=self.step, history=self.history,
                               ranks=ranks, visited=seen, workers=comm.world)
        meta = dict(self.meta, steps=self.step, history_tail=self.history[-5:])
        save_checkpoint(path, self.student, "relearn", meta, extra_state)

    def finish(self) -> None:
        """Check the workers agree, total the visits, write ``OUT.last.pt`` and ``OUT`` (collective)."""
        _check_in_sync(self.comm, self.student)
        self.visited = self.comm.gather(self.visited[self.comm.rank])
        self.save(self.job.last, final=False)
        self.save(self.job.out, final=True)

    def summary(self) -> dict:
        ran = self.step - self.first_step
        return {"out": str(self.job.out), "last": str(self.job.last), "steps": self.step, "steps_run": ran,
                "cines": len(self.sources), "workers": self.comm.world, "cines_visited": int(sum(self.visited)),
                "minutes": self.seconds / 60.0, "seconds_per_step": self.seconds / ran if ran else None,
                "prepare_seconds": self.preparing, "final_loss": self.history[-1] if self.history else None}


def run_collection(job: CollectionJob, comm: Communicator = LocalCommunicator(),
                   on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Relearn on this worker's shard (``sources[rank::world]``) in step with the other workers.

    ``on_step(step, terms)`` is called after each optimisation step (rank 0 wires it to a progress
    bar). Returns this worker's summary; every worker returns the same ``steps`` and final loss.
    """
    run = CollectionRun(job, comm)
    with trainable(run.student, job.config.train) as params:
        run.resume(params)
        run.loop(params, on_step)
        run.finish()
    return run.summary()


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


def relearn_collection(job: CollectionJob, progress: bool = True) -> dict:
    """Relearn one student over every cine of ``job`` in this process; write ``job.out`` (kind ``relearn``)."""
    with progress_bar(job, progress) as on_step:
        return run_collection(job, LocalCommunicator(), on_step)


def relearn_pairs(pairs: Sequence[tuple[str | Path, str | Path]], out: str | Path, checkpoint: str | None = None,
                  config: RelearnConfig = RelearnConfig(), steps_per_cine: int = 4, save_every: int = 50,
                  resume: bool = False, device: str = "cpu", progress: bool = True,
                  on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Relearn over explicit ``(image, painted label)`` file pairs (every painted frame is support).

    The MONAI Label train task ``cineprop_relearn`` calls this with the datastore's studies and
    their saved support (or final) labels. ``on_step(step, total steps, loss terms)`` after each step
    (the terms are floats; the history entry's ``cine`` name is left out).
    """
    job = CollectionJob(data_dir=Path("."), out=Path(out), checkpoint=checkpoint, config=config,
                        steps_per_cine=steps_per_cine, save_every=save_every, resume=resume, device=device,
                        pairs=tuple((Path(i), Path(p)) for i, p in pairs))
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
