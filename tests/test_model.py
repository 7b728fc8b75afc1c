"""The image-phase model: stage shapes, pseudo-mask maths, multi-label/multi-shot handling, checkpoints."""

from __future__ import annotations

import pytest
import torch

from cineprop.checkpoints import load_model, read_checkpoint, save_checkpoint
from cineprop.errors import CheckpointError
from cineprop.model import FewShotSegmenter, ModelConfig
from cineprop.model.pseudo_mask import minmax, pseudo_mask

TINY = ModelConfig(resolution=64, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1), decoder=(16, 12, 8))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FewShotSegmenter(TINY).eval()


def test_stage_shapes(tiny):
    r = TINY.resolution
    b, k = 3, 2
    query = torch.rand(b, 1, r, r)
    support = torch.rand(b, k, 1, r, r)
    masks = (torch.rand(b, k, 1, r, r) > 0.5).float()
    with torch.no_grad():
        feats = tiny.extract_features(query)
        assert [tuple(f.shape) for f in feats] == [(b, 8, 32, 32), (b, 16, 16, 16), (b, 24, 8, 8), (b, 32, 4, 4)]
        assert tiny.embed(feats).shape == (b, 24 + 32, 8, 8)
        enc = tiny.encode_support(support, masks)
        assert [tuple(f.shape) for f in enc.features] == [(b, k, 8, 32, 32), (b, k, 16, 16, 16), (b, k, 24, 8, 8)]
        weights = torch.ones(b, k)
        pseudo = tiny.pseudo_mask(tiny.embed(feats), enc, weights)
        assert pseudo.shape == (b, 2, 8, 8) and pseudo.min() >= 0 and pseudo.max() <= 1
        fused = tiny.fuse(feats, enc, weights, pseudo)
        assert fused.shape == (b, 8, 32, 32)
        assert tiny.decode(fused).shape == (b, 2, r, r)
        logits = tiny(query, support, masks, weights, torch.rand(b, 1, r, r), masks[:, 0], torch.tensor([1.0, 0, 0.5]))
        assert logits.shape == (b, 2, r, r) and torch.isfinite(logits).all()


def test_pseudo_mask_identical_support_and_query_overlap():
    torch.manual_seed(1)
    emb = torch.randn(1, 64, 12, 12)
    mask = torch.zeros(1, 1, 1, 12, 12)
    mask[..., 3:8, 2:9] = 1
    p = pseudo_mask(emb, emb[:, None], mask, torch.ones(1, 1))
    best = p[0, 0]
    inside = mask[0, 0, 0].bool()
    assert torch.allclose(best[inside], torch.ones_like(best[inside]))   # each location matches itself
    predicted = best > 0.9
    overlap = 2 * (predicted & inside).sum() / (predicted.sum() + inside.sum())
    assert overlap > 0.9


def test_pseudo_mask_shot_weights_and_empty_shots():
    torch.manual_seed(2)
    q = torch.randn(2, 16, 6, 6)
    s = torch.randn(2, 2, 16, 6, 6)
    m = (torch.rand(2, 2, 1, 6, 6) > 0.6).float()
    only_first = pseudo_mask(q, s[:, :1], m[:, :1], torch.ones(2, 1))
    weighted = pseudo_mask(q, s, m, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(only_first, weighted, atol=1e-6)
    empty = m.clone()
    empty[:, 1] = 0                                      # a padded shot with no mask is ignored
    assert torch.allclose(pseudo_mask(q, s, empty, torch.ones(2, 2)), only_first, atol=1e-6)
    assert torch.allclose(minmax(torch.full((1, 3, 3), 2.0)), torch.zeros(1, 3, 3))


def test_checkpoint_round_trip_and_errors(tmp_path, tiny):
    path = save_checkpoint(tmp_path / "m.pt", tiny, meta={"note": "test"})
    model, payload = load_model(path)
    assert payload["meta"]["note"] == "test" and model.config == TINY
    x = torch.rand(1, 1, 64, 64)
    s, m = torch.rand(1, 1, 1, 64, 64), torch.ones(1, 1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x, s, m), tiny(x, s, m), atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a cineprop checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "missing.pt")
