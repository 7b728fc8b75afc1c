"""A checkpoint is data, never code: planted pickles are refused before anything runs, and
``save_checkpoint`` never writes what the loader would refuse (``cineprop.checkpoints``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cineprop.checkpoints import BUNDLED, FORMAT, load_model, read_checkpoint, save_checkpoint
from cineprop.errors import CheckpointError
from cineprop.model import FewShotSegmenter, ModelConfig


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny_model() -> FewShotSegmenter:
    torch.manual_seed(0)
    return FewShotSegmenter(ModelConfig(resolution=48, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8)))


@pytest.mark.parametrize("where", ["meta", "state_dict", "top"])
def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path, where):
    marker = tmp_path / "code_ran"
    payload = {"format": FORMAT, "kind": "image", "config": tiny_model().config.to_dict(), "state_dict": {}, "meta": {}}
    if where == "top":
        payload = RunsCode(marker)
    else:
        payload[where] = RunsCode(marker)
    torch.save(payload, tmp_path / "planted.pt")
    with pytest.raises(CheckpointError, match=r"refused: the file holds Python objects.*posix\.system"):
        read_checkpoint(tmp_path / "planted.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(tmp_path / "planted.pt")
    assert not marker.exists()


def test_training_state_round_trips_and_other_objects_are_not_saved(tmp_path):
    model = tiny_model()
    optimiser = torch.optim.Adam(model.parameters())
    rng = np.random.default_rng(0)
    extra = {"optimiser": optimiser.state_dict(), "sampler_rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), "order": np.arange(5), "best": {"dice": np.float64(0.5)}}
    path = save_checkpoint(tmp_path / "ok.pt", model, "image", {"val": {"dice": np.float32(0.25)}, "steps": (1, 2)},
                           extra_state=extra)
    loaded = read_checkpoint(path)
    assert loaded["extra_state"]["order"].tolist() == [0, 1, 2, 3, 4]
    assert loaded["extra_state"]["sampler_rng"] == rng.bit_generator.state
    assert float(loaded["meta"]["val"]["dice"]) == 0.25
    with pytest.raises(CheckpointError, match="PosixPath"):
        save_checkpoint(tmp_path / "bad.pt", model, "image", {"data": tmp_path})
    assert not (tmp_path / "bad.pt").exists()


def test_the_bundled_checkpoint_is_plain_data():
    payload = read_checkpoint(BUNDLED)
    assert payload["format"] == FORMAT and payload["kind"] == "image"
