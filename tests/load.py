"""Load on a real server: concurrent infers plus a background task, with ``/info`` probed throughout.

Used by ``tests/test_app_load.py`` (small, bounded) and ``bench/bench_load.py`` (the numbers in
``docs/benchmarks.md``). Everything goes to 127.0.0.1 through HTTP.

:func:`run_load`:

1. *sequential*: one ``POST /infer/cineprop`` per study, one after the other (the reference labels);
2. *concurrent*: the background task is started (a registered train task if the app has one, else a
   batch infer over every study: both run as MONAI Label subprocesses), then all infers are sent at
   once from as many client threads, while a prober sends ``GET /info/`` on a new connection every
   ``probe_every`` seconds until the last infer and the background task are done (or ``timeout``).

It returns the labels of both passes and every latency; :func:`summary` reduces them to
throughput and percentiles.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from cineprop.io import read_label


def infer_labels(url: str, image_id: str, support: Path) -> tuple[np.ndarray, float, int]:
    """One infer with the support uploaded; returns (labels I×J×T uint8, seconds, status)."""
    start = time.perf_counter()
    with open(support, "rb") as f:
        r = requests.post(f"{url}/infer/cineprop", params={"image": image_id, "output": "image"}, timeout=600,
                          files={"label": (support.name, f), "params": (None, json.dumps({}))})
    seconds = time.perf_counter() - start
    if r.status_code != 200:
        return np.zeros(0, np.uint8), seconds, r.status_code
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.nii.gz"
        out.write_bytes(r.content)
        return read_label(out).array, seconds, 200


#: the train task the load runs beside the infers, and its request: real fine-tuning steps (forward,
#: backward, validation) at learning rate 0, so it never publishes a new model while the infers
#: run and their labels stay comparable with the sequential ones
TRAIN_TASK, TRAIN_PARAMS = "cineprop_image", {"steps": 8, "lr": 0}


def start_background(url: str, prefer_train: bool = True) -> tuple[str, str]:
    """Start the fine-tuning train task if registered (else a batch infer); returns (kind, name)."""
    info = requests.get(f"{url}/info/", timeout=60).json()
    if prefer_train and TRAIN_TASK in (info.get("trainers") or {}):
        r = requests.post(f"{url}/train/{TRAIN_TASK}", json=TRAIN_PARAMS, timeout=60)
        r.raise_for_status()
        return "train", TRAIN_TASK
    r = requests.post(f"{url}/batch/infer/cineprop", params={"images": "all"}, json={"multi_gpu": False}, timeout=60)
    r.raise_for_status()
    return "batch", "cineprop"


def background_status(url: str, kind: str) -> dict:
    return requests.get(f"{url}/{'train' if kind == 'train' else 'batch/infer'}/", timeout=60).json()


def run_load(url: str, studies: list[tuple[str, Path]], background: bool = True, probe_every: float = 0.1,
             timeout: float = 600.0) -> dict:
    """Run both passes (see the module docstring). ``studies`` = [(image id, support label file)]."""
    sequential = {}
    for image_id, support in studies:
        sequential[image_id] = infer_labels(url, image_id, support)

    kind = name = None
    if background:
        kind, name = start_background(url)
    done = threading.Event()
    probes: list[tuple[float, float, int]] = []  # (seconds since start, latency, status)
    start = time.perf_counter()

    def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                status = requests.get(f"{url}/info/", timeout=30, headers={"Connection": "close"}).status_code
            except requests.RequestException:
                status = 0
            probes.append((t0 - start, time.perf_counter() - t0, status))
            done.wait(probe_every)

    concurrent: dict = {}
    barrier = threading.Barrier(len(studies))

    def client(image_id: str, support: Path) -> None:
        barrier.wait()
        sent = time.perf_counter() - start
        labels, seconds, status = infer_labels(url, image_id, support)
        concurrent[image_id] = (labels, seconds, status, sent)

    prober = threading.Thread(target=probe)
    prober.start()
    clients = [threading.Thread(target=client, args=s) for s in studies]
    for c in clients:
        c.start()
    for c in clients:
        c.join(timeout)
    infers_done = time.perf_counter() - start
    status = {}
    if kind:
        while time.perf_counter() - start < timeout:
            status = background_status(url, kind)
            if status.get("status") not in ("SUBMITTED", "RUNNING"):
                break
            time.sleep(0.5)
    background_done = time.perf_counter() - start
    done.set()
    prober.join()
    return {"sequential": sequential, "concurrent": concurrent, "probes": probes, "infers_done": infers_done,
            "background": {"kind": kind, "name": name, "status": status.get("status"),
                           "seconds": round(background_done, 2) if kind else None,
                           "details": [line[:200] for line in (status.get("details") or [])[-3:]]}}


def percentiles(values, qs=(50, 90, 95, 99, 100)) -> dict:
    values = np.asarray(list(values), dtype=float)
    return {f"p{q}": round(float(np.percentile(values, q)), 4) for q in qs} if values.size else {}


def summary(result: dict) -> dict:
    """Throughput, latency percentiles, /info latencies while the infers ran, and whether labels match."""
    seq, conc = result["sequential"], result["concurrent"]
    seq_total = sum(v[1] for v in seq.values())
    end = result["infers_done"]
    during = [lat for t, lat, _ in result["probes"] if t <= end]
    same = all(conc[k][2] == 200 and np.array_equal(conc[k][0], seq[k][0]) for k in seq)
    return {
        "infers": len(seq),
        "sequential": {"seconds": round(seq_total, 2), "per_second": round(len(seq) / seq_total, 3),
                       "latency": percentiles(v[1] for v in seq.values())},
        "concurrent": {"seconds": round(end, 2), "per_second": round(len(conc) / end, 3),
                       "latency": percentiles(v[1] for v in conc.values()),
                       "statuses": sorted({v[2] for v in conc.values()})},
        "same_labels_as_sequential": same,
        "info": {"probes": len(result["probes"]), "probes_during_infers": len(during),
                 "latency_during_infers": percentiles(during),
                 "latency_all": percentiles(lat for _, lat, _ in result["probes"]),
                 "not_ok": sum(1 for *_, s in result["probes"] if s != 200)},
        "background": result["background"],
    }
