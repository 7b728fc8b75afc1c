"""Suite-wide isolation: no test leaves process-global numeric state behind for the next one.

Several code paths set process-wide state on purpose (``cineprop.threads.configure_threads`` and the
trainers call ``torch.set_num_threads``; the batch worker calls ``cv2.setNumThreads``; trainers and the
relearner seed the global generators). In one pytest process that state used to leak into whichever
test ran next, so results that depend on the summation order (a different thread count splits
reductions differently) or on the generators changed with the test order. This fixture snapshots
that state before every test and restores it afterwards. Modules are only touched once imported.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest


def _snapshot() -> dict:
    state = {"random": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = (torch.get_num_threads(), torch.get_rng_state(), torch.get_default_dtype(),
                          torch.are_deterministic_algorithms_enabled(), torch.is_grad_enabled())
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        state["cv2"] = cv2.getNumThreads()
    return state


def _restore(state: dict) -> None:
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if "torch" in state:
        threads, rng, dtype, deterministic, grad = state["torch"]
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_grad_enabled(grad)
    cv2 = sys.modules.get("cv2")
    if "cv2" in state and cv2.getNumThreads() != state["cv2"]:
        cv2.setNumThreads(state["cv2"])


@pytest.fixture(autouse=True)
def _isolate_global_numeric_state():
    state = _snapshot()
    yield
    _restore(state)
