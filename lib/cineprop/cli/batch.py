"""``cineprop batch DATA_DIR --support-from labels|DIR --out OUT_DIR``: propagate a whole cohort.

See :mod:`cineprop.batch` and docs/cohort.md. Exit status: 0 when every planned cine with a support
ended ``ok``, 1 when some failed (listed in the summary and ``OUT_DIR/manifest.csv``), 2 on a usage
error, 130 when interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse

from cineprop.cli.common import add_method_arguments, method_settings


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="propagate every cine of a folder (local Ray by default, or a Ray cluster)",
        description="Propagate the painted support frames of every cine in DATA_DIR and write one label volume per "
                    "cine (OUT_DIR/ID.nii.gz, the cine's geometry), OUT_DIR/manifest.csv and OUT_DIR/summary.json. "
                    "Re-running the same command resumes: finished cines are skipped.")
    p.add_argument("data_dir", help="folder of cines ID.nii.gz (3D H×W×T or 4D H×W×Z×T); *_label files are skipped")
    p.add_argument("--support-from", required=True, metavar="labels|DIR",
                   help="'labels': each cine's ID_label.nii.gz beside it in DATA_DIR; or a folder of support "
                        "volumes DIR/ID.nii.gz (or DIR/ID_label.nii.gz). Support frames = the painted frames")
    p.add_argument("--out", required=True, help="output folder (created; must not be DATA_DIR or the support folder)")
    p.add_argument("--split-file", help="only these cines: a CSV with columns sequence,split or one id per line")
    p.add_argument("--split", help="with a CSV --split-file: only this split (e.g. test)")
    p.add_argument("--limit", type=int, default=None, help="only the first N cines (quick checks)")
    add_method_arguments(p)
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (ray://HEAD:10001, HEAD:6379 or 'auto'); default: start a local one")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers, one propagator each (default: CPUs / --cpus-per-worker); 0 = plain loop, no Ray")
    p.add_argument("--local", action="store_true", help="plain single-process loop, no Ray (same as --workers 0)")
    p.add_argument("--retries", type=int, default=2,
                   help="extra attempts for a cine whose worker died or hit an unexpected error (default 2); "
                        "user errors such as an empty support fail at once")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker reserves (and uses as threads)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each worker reserves (default: 1 with --device cuda*, else 0)")
    p.add_argument("--worker-memory-gb", type=float, default=None,
                   help="memory each worker reserves on a cluster node (Ray scheduling), e.g. from docs/cohort.md")
    p.add_argument("--in-flight", type=int, default=2, help="cines in flight per worker (backpressure, default 2)")
    p.add_argument("--flag-threshold", type=float, default=None,
                   help="query frames below this confidence are flagged in the manifest (default 0.5)")
    p.add_argument("--redo", action="store_true", help="ignore earlier results in OUT_DIR and propagate everything")
    p.add_argument("--no-ship-code", action="store_true",
                   help="with --ray-address: use the cluster's installed cineprop instead of uploading this one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cineprop.batch import BatchConfig, format_summary, read_ids, run_batch
    from cineprop.errors import CinepropError
    from cineprop.propagation import DEFAULT_FLAG_THRESHOLD

    if args.split and not args.split_file:
        raise CinepropError("--split needs --split-file")
    if args.limit is not None and args.limit < 1:
        raise CinepropError("--limit must be at least 1")
    options = method_settings(args)
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if str(options.get("device") or "").startswith("cuda") else 0.0
    config = BatchConfig(
        data_dir=args.data_dir, support_from=args.support_from, out_dir=args.out, method=args.method,
        options=options, ids=read_ids(args.split_file, args.split) if args.split_file else None, limit=args.limit,
        workers=args.workers, local=args.local, ray_address=args.ray_address, retries=args.retries,
        per_worker=args.in_flight, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=gpus,
        memory_per_worker_gb=args.worker_memory_gb,
        flag_threshold=DEFAULT_FLAG_THRESHOLD if args.flag_threshold is None else args.flag_threshold,
        redo=args.redo, progress=not args.quiet, ship_code=not args.no_ship_code, command=args.command_line)
    summary = run_batch(config)
    print(format_summary(summary))
    print(f"manifest: {args.out}/manifest.csv; summary: {args.out}/summary.json")
    return 1 if summary["failed"] else 0
