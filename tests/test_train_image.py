"""``cineprop train-image`` end to end on the bundled sample studies: it writes its run folder, keeps
the best checkpoint by validation, and an interrupted run resumed from ``last.pt`` ends exactly where
an uninterrupted one does (weights, history)."""

from __future__ import annotations

import json

import torch

from cineprop.checkpoints import read_checkpoint
from cineprop.model import ModelConfig
from cineprop.training.train_image import TrainConfig, train_image


def _data_folder(root, sample_dir):
    """A ``--data`` folder with two training studies and one validation study (links to the samples)."""
    sequences = root / "acdc" / "sequences"
    sequences.mkdir(parents=True)
    for case in ("patient001_frame01", "patient022_frame01", "patient080_frame01"):
        for suffix in ("", "_label"):
            (sequences / f"{case}{suffix}.nii.gz").symlink_to(sample_dir / f"{case}{suffix}.nii.gz")
    (root / "acdc" / "splits.csv").write_text(
        "sequence,split\npatient001_frame01,train\npatient022_frame01,train\npatient080_frame01,val\n")
    return root


def _config(data, out, steps):
    # warm-up longer than the run: the learning rate of a step does not depend on ``steps``, so a
    # 2-step run resumed to 4 steps follows the same schedule as a 4-step run
    return TrainConfig(data=str(data), out=str(out), steps=steps, batch=2, validate_every=2, image_sets=(),
                       threads=1, warmup=200, model=ModelConfig(resolution=64))


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, sample_dir):
    data = _data_folder(tmp_path / "data", sample_dir)
    whole = train_image(_config(data, tmp_path / "whole", 4), progress=False)
    train_image(_config(data, tmp_path / "resumed", 2), progress=False)
    resumed = train_image(_config(data, tmp_path / "resumed", 4), progress=False)

    assert whole["steps"] == resumed["steps"] == 4
    a = read_checkpoint(tmp_path / "whole" / "last.pt")
    b = read_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["extra_state"]["step"] == b["extra_state"]["step"] == 4
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert [h["step"] for h in history] == [2, 4]
    again = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [{k: v for k, v in h.items() if k != "minutes"} for h in history] == \
        [{k: v for k, v in h.items() if k != "minutes"} for h in again]
    assert again[1]["minutes"] >= again[0]["minutes"]  # the resumed run's clock goes on

    best = read_checkpoint(tmp_path / "whole" / "best.pt")
    best_record = max(history, key=lambda h: h["val_dice"])
    assert best["meta"]["best"]["step"] == best_record["step"] == whole["best"]["step"]
    assert best["meta"]["recipe"]["steps"] == 4 and best["meta"]["train_sequences"] == 2
    assert (tmp_path / "whole" / "curve.png").stat().st_size > 0


def test_width_scale_trains_a_wider_network_that_loads_back(tmp_path, sample_dir, capsys):
    """``--width-scale 1.5``: channel widths × 1.5 (multiples of 4) in the checkpoint, which loads as that
    architecture; a scale outside 0.25..4 is refused before any work."""
    from cineprop.checkpoints import load_model
    from cineprop.cli import main

    data = _data_folder(tmp_path / "data", sample_dir)
    args = ["train-image", "--data", str(data), "--steps", "2", "--batch", "2", "--resolution", "64",
            "--image-sets", "--validate-every", "2", "--threads", "1"]
    assert main(args + ["--out", str(tmp_path / "wide"), "--width-scale", "1.5"]) == 0
    model, _ = load_model(str(tmp_path / "wide" / "best.pt"))
    assert tuple(model.config.widths) == (36, 72, 144, 240) and tuple(model.config.decoder) == (96, 72, 48)
    narrow = sum(p.numel() for p in load_model(None)[0].parameters())
    assert sum(p.numel() for p in model.parameters()) > 2 * narrow
    assert main(args + ["--out", str(tmp_path / "bad"), "--width-scale", "10"]) != 0
    assert "--width-scale 10.0 is outside 0.25..4" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
