"""``cineprop relearn DATA_DIR --out CKPT``: relearn the image model over a collection of cines."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("relearn", help="spatiotemporal consistency relearning over a collection of cines",
                       description="Relearn the image model (plus a Temporal Attention Unit) on unlabelled cines, "
                                   "using only their painted frames as labels. DATA_DIR holds images ID.nii.gz; the "
                                   "painted frames are the non-empty frames of ID_label.nii.gz beside them or in "
                                   "--support-from DIR. Writes a checkpoint of kind 'relearn' for --method model.")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="checkpoint to write (OUT.last.pt is kept for resuming)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint to start from (default: the bundled one); of a relearn checkpoint, the image "
                        "weights it stores")
    p.add_argument("--split-file", help="CSV with columns sequence,split")
    p.add_argument("--split", help="relearn only on this split (e.g. train)")
    p.add_argument("--support-from", default="labels",
                   help="'labels' (ID_label.* beside each image) or a folder with ID_label.* or ID.* label files")
    p.add_argument("--frames", default="all", choices=["all", "first", "middle"],
                   help="painted frames used per label: all, or --shots of them starting at the first/middle one "
                        "(emulates sparse annotation on fully labelled data)")
    p.add_argument("--shots", type=int, default=1, help="with --frames first|middle: painted frames per label")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps in total (default 400)")
    p.add_argument("--steps-per-cine", type=int, default=4, help="consecutive steps on one cine")
    p.add_argument("--save-every", type=int, default=50, help="write OUT.last.pt every N steps")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick checks)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="relearning option (any RelearnConfig field, e.g. lambda_w=0 or train=tau,head); repeatable")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT.last.pt exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = p.add_argument_group("data-parallel workers (Ray Train; see docs/cohort.md)")
    ray.add_argument("--workers", type=int, default=None,
                     help="relearn with N data-parallel Ray Train workers, each on its share of the images, "
                          "gradients averaged every step (default: one process, no Ray)")
    ray.add_argument("--ray-address", default=None,
                     help="join this Ray cluster (HOST:6379, ray://HOST:10001 or auto) instead of starting a "
                          "local instance; data, --checkpoint and --out must be on storage every node mounts")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (torch threads) per worker")
    ray.add_argument("--max-failures", type=int, default=0,
                     help="restart the workers up to N times after one dies (each restart resumes from OUT.last.pt)")
    ray.add_argument("--no-ship-code", action="store_true",
                     help="with --ray-address: use the cineprop installed on the nodes instead of uploading this one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cineprop.cli.common import parse_options
    from cineprop.errors import CinepropError
    from cineprop.relearn.collection import CollectionJob, relearn_collection
    from cineprop.relearn.config import RelearnConfig

    if args.shots < 1 or args.steps_per_cine < 1 or args.save_every < 1:
        raise CinepropError("--shots, --steps-per-cine and --save-every must be at least 1")
    if args.workers is None and (args.ray_address or args.no_ship_code):
        raise CinepropError("--ray-address and --no-ship-code need --workers N")
    if args.workers is not None and (args.workers < 1 or args.cpus_per_worker <= 0 or args.max_failures < 0):
        raise CinepropError("--workers must be at least 1, --cpus-per-worker positive, --max-failures at least 0")
    options = parse_options(args.option)
    options.setdefault("steps", 400)
    for key in ("steps", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    config = RelearnConfig().with_options(options)
    job = CollectionJob(data_dir=Path(args.data_dir), out=Path(args.out), checkpoint=args.checkpoint, config=config,
                        support_from=args.support_from, frames=args.frames, shots=args.shots,
                        steps_per_cine=args.steps_per_cine, save_every=args.save_every, resume=not args.no_resume,
                        limit=args.limit, device=args.device,
                        split_file=Path(args.split_file) if args.split_file else None, split=args.split)
    if args.workers is None:
        summary = relearn_collection(job, progress=not args.quiet)
    else:
        from cineprop.relearn.distributed import relearn_distributed

        summary = relearn_distributed(job, args.workers, args.ray_address, args.cpus_per_worker, args.max_failures,
                                      progress=not args.quiet, ship_code=not args.no_ship_code)
    rate = f", {summary['seconds_per_step']:.2f} s/step" if summary.get("seconds_per_step") else ""
    print(f"relearned {summary['steps']} steps over {summary['cines_visited']} cine visits "
          f"({summary['cines']} images, {summary['workers']} worker(s)) in {summary['minutes']:.1f} min{rate}: "
          f"{summary['out']}")
    return 0
