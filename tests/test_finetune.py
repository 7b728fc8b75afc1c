"""Fine-tuning on approved labels: published only when held-back validation improves."""

from __future__ import annotations

import hashlib

import pytest
import torch

from cineprop.checkpoints import load_model, save_checkpoint
from cineprop.errors import CinepropError
from cineprop.io import Geometry, Volume, write_image, write_label
from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.synthetic import moving_shapes
from cineprop.training.finetune import FinetuneConfig, finetune_image_model, split_studies

TINY = ModelConfig(resolution=48, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8))


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("final")
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(float(v) for v in torch.eye(3).flatten()))
    pairs = []
    for seed in range(4):
        frames, labels = moving_shapes(40, 40, 8, labels=1, seed=seed)
        image = write_image(root / f"study{seed}.nii.gz", frames, geometry)
        label = write_label(root / f"study{seed}_label.nii.gz", labels, Volume(frames, geometry))
        pairs.append((str(image), str(label)))
    torch.manual_seed(0)
    start = save_checkpoint(root / "start.pt", FewShotSegmenter(TINY))
    return pairs, start


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_split_is_stable_and_never_empty():
    train, val = split_studies(["b", "a", "c", "d"], 0.25)
    assert val and train and set(train) | set(val) == {"a", "b", "c", "d"}
    assert split_studies(["d", "c", "b", "a"], 0.25) == (train, val)
    with pytest.raises(CinepropError, match="at least 2 studies"):
        split_studies(["only"], 0.25)


def test_finetune_publishes_only_when_validation_improves(studies, tmp_path):
    pairs, start = studies
    start_sha = sha(start)
    out = tmp_path / "tuned.pt"
    frozen = finetune_image_model(pairs, start, out, FinetuneConfig(steps=3, lr=0.0, batch=4, threads=1),
                                  progress=False)
    assert not frozen["published"] and not out.exists()           # lr 0: nothing changes, nothing written
    assert frozen["val_after"] == pytest.approx(frozen["val_before"])
    tuned = finetune_image_model(pairs, start, out, FinetuneConfig(steps=60, lr=3e-3, batch=6, threads=1),
                                 progress=False)
    assert tuned["val_after"] > tuned["val_before"] and tuned["published"]
    model, payload = load_model(out)
    assert payload["meta"]["finetune"]["val_after"] == pytest.approx(tuned["val_after"])
    assert sha(start) == start_sha                                # the starting checkpoint is untouched


def test_final_labels_on_one_frame_only_are_refused_clearly(tmp_path):
    """A 'final' label painted on a single frame cannot teach propagation: a clear error, not a crash."""
    import numpy as np

    from cineprop.errors import InputError
    from cineprop.training.finetune import load_pairs

    frames, labels = moving_shapes(40, 40, 6, labels=1, seed=3)
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()))
    image = write_image(tmp_path / "one.nii.gz", frames, geometry)
    painted = np.zeros_like(labels)
    painted[:, :, 2] = labels[:, :, 2]
    label = write_label(tmp_path / "one_label.nii.gz", painted, Volume(frames, geometry))
    with pytest.raises(InputError, match="at least two frames"):
        load_pairs([(str(image), str(label))], "final")
    full = write_label(tmp_path / "full_label.nii.gz", labels, Volume(frames, geometry))
    assert len(load_pairs([(str(image), str(full))], "final").ids) == 1


def test_validation_scores_the_network_not_the_carried_masks():
    """Checkpoints are chosen by validation; the carried masks of the default session (flow blend 0.9)
    are the same for every set of weights, so validation leaves them out. An untrained network
    scores far below what the blend with the carrier scores on the same cines."""
    from cineprop.session import SessionConfig
    from cineprop.training.data import CineSet
    from cineprop.training.validate import validate_cines

    shapes = [moving_shapes(40, 40, 8, labels=1, seed=seed) for seed in range(3)]
    cines = CineSet("shapes", [f"s{i}" for i in range(3)], [f for f, _ in shapes], [lab for _, lab in shapes], (1,))
    torch.manual_seed(0)
    untrained = FewShotSegmenter(TINY).eval()
    network = validate_cines(untrained, cines)["mean_dice"]
    blended = validate_cines(untrained, cines, config=SessionConfig())["mean_dice"]
    assert network == pytest.approx(validate_cines(untrained, cines, config=SessionConfig(flow_weight=0.0))["mean_dice"])
    assert blended > network + 0.2, (network, blended)
