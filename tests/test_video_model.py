"""The video-phase model: ``VideoSegmenter`` stages, the checkpoint kind choosing the class, old files."""

from __future__ import annotations

import pytest
import torch

from cineprop.checkpoints import FORMAT, image_model_of, load_image_model, load_model, save_checkpoint
from cineprop.model_propagator import ModelPropagator
from cineprop.errors import CheckpointError
from cineprop.methods import build_propagator
from cineprop.model import FewShotSegmenter, ModelConfig, TemporalAttentionUnit, VideoSegmenter
from cineprop.relearn.propagator import TwoStagePropagator

TINY = ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8))


def _old_relearn_checkpoint(path, relearned: FewShotSegmenter, tau: TemporalAttentionUnit,
                            stage1: FewShotSegmenter) -> None:
    """A ``relearn`` checkpoint as written before ``VideoSegmenter`` existed (TAU set as ``model.tau``).

    The dict is spelled out here, not produced by today's code, so a change of the on-disk format fails.
    """
    state = dict(relearned.state_dict())
    state.update({f"tau.{k}": v for k, v in tau.state_dict().items()})
    torch.save({"format": "cineprop-checkpoint-1", "kind": "relearn", "config": TINY.to_dict(),
                "state_dict": state, "meta": {"steps": 3, "image_meta": {"note": "image"}},
                "extra_state": {"stage1_state_dict": stage1.state_dict()}}, path)


def test_video_model_stages_and_shapes():
    torch.manual_seed(0)
    model = VideoSegmenter(TINY, seed=1).eval()
    fused = torch.randn(2, 5, TINY.decoder[2], 32, 32)                   # B×T×C×R/2×R/2
    assert torch.equal(model.temporal_attend(fused), fused)              # identity before relearning
    torch.nn.init.normal_(model.tau.out.weight)
    out = model.temporal_attend(fused, torch.ones(2, 5, dtype=torch.bool))
    assert out.shape == fused.shape and not torch.allclose(out, fused)
    assert model.decode(out.flatten(0, 1)).shape == (10, 2, 64, 64)
    assert model.temporal_window == TINY.tau_window
    assert {k.split(".")[0] for k in model.state_dict()} == {"backbone", "fusion", "head", "tau"}


def test_a_relearn_checkpoint_written_before_the_video_model_still_loads(tmp_path):
    torch.manual_seed(0)
    relearned, stage1 = FewShotSegmenter(TINY).eval(), FewShotSegmenter(TINY).eval()
    tau = TemporalAttentionUnit(TINY.decoder[2], TINY.tau_window)
    torch.nn.init.normal_(tau.out.weight)                                 # a relearned, non-identity TAU
    _old_relearn_checkpoint(tmp_path / "old.pt", relearned, tau, stage1)
    model, payload = load_model(tmp_path / "old.pt")
    assert type(model) is VideoSegmenter and payload["kind"] == "relearn"
    fused = torch.randn(1, 4, TINY.decoder[2], 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.temporal_attend(fused), tau(fused), atol=1e-6)
    assert all(torch.equal(v, relearned.state_dict()[k]) for k, v in model.state_dict().items()
               if not k.startswith("tau."))
    image, image_payload = image_model_of(model, payload)
    assert type(image) is FewShotSegmenter and image_payload["kind"] == "image"
    assert image_payload["meta"]["note"] == "image" and image_payload["meta"]["relearned_from"]["steps"] == 3
    assert all(torch.equal(v, stage1.state_dict()[k]) for k, v in image.state_dict().items())
    # written again by today's code, the file has the same keys
    again = torch.load(save_checkpoint(tmp_path / "new.pt", model, "relearn"), weights_only=False)
    assert again["state_dict"].keys() == torch.load(tmp_path / "old.pt", weights_only=False)["state_dict"].keys()
    # the kind picks the propagator of --method model; stage 1 runs the stored image weights
    two_stage = build_propagator("model", checkpoint=str(tmp_path / "old.pt"))
    assert isinstance(two_stage, TwoStagePropagator) and isinstance(two_stage.model, VideoSegmenter)
    assert all(torch.equal(v, stage1.state_dict()[k]) for k, v in two_stage.stage1.state_dict().items())
    image_file = save_checkpoint(tmp_path / "image.pt", stage1)
    assert type(build_propagator("model", checkpoint=str(image_file))) is ModelPropagator
    assert type(load_image_model(image_file)[0]) is FewShotSegmenter


def test_checkpoint_kind_errors(tmp_path):
    torch.manual_seed(0)
    model = FewShotSegmenter(TINY)
    payload = {"format": FORMAT, "kind": "video", "config": TINY.to_dict(), "state_dict": model.state_dict()}
    torch.save(payload, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="unknown checkpoint kind 'video'"):
        load_model(tmp_path / "odd.pt")
    torch.save(dict(payload, kind="relearn"), tmp_path / "no_tau.pt")    # relearn kind, image weights only
    with pytest.raises(CheckpointError, match="missing .*tau"):
        load_model(tmp_path / "no_tau.pt")
    save_checkpoint(tmp_path / "no_stage1.pt", VideoSegmenter(TINY), "relearn")
    with pytest.raises(CheckpointError, match="without the image weights"):
        load_image_model(tmp_path / "no_stage1.pt")
