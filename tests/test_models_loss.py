from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.batches import SequenceSet
from engine.config import TrainConfig, validation_problems
from engine.errors import ConfigError
from engine.folds import assign_folds
from engine.loss import masked_hybrid_loss
from engine.models import build_model

MODELS = ("mlp", "lstm", "gru", "transformer")


def test_loss_matches_hand_computation_and_ignores_padding() -> None:
    pred = torch.tensor([[[1.0], [2.0], [9.0]], [[0.0], [5.0], [7.0]]])
    target = torch.tensor([[[0.0], [4.0], [100.0]], [[1.0], [5.0], [-50.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # valid errors: 1, -2, -1, 0, 57  -> squared 1,4,1,0,3249 ; abs 1,2,1,0,57
    mse = (1 + 4 + 1 + 0 + 3249) / 5
    mae = (1 + 2 + 1 + 0 + 57) / 5
    loss = masked_hybrid_loss(pred, target, mask, alpha=0.7)
    assert loss.item() == pytest.approx(0.7 * mse + 0.3 * mae, rel=1e-6)
    # Garbage (even NaN) at a padded step never reaches the loss.
    pred2 = pred.clone()
    pred2[0, 2, 0] = float("nan")
    target2 = target.clone()
    target2[0, 2, 0] = 1e9
    assert masked_hybrid_loss(pred2, target2, mask, 0.7).item() == loss.item()


def test_loss_averages_over_every_target_column() -> None:
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 3.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, False]])
    assert masked_hybrid_loss(pred, target, mask, 1.0).item() == pytest.approx((1 + 9) / 2)
    assert masked_hybrid_loss(pred, target, mask, 0.0).item() == pytest.approx((1 + 3) / 2)


@pytest.mark.parametrize("model_name", MODELS)
def test_padding_never_changes_a_prediction(model_name: str) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(model=model_name, hidden_size=8, num_layers=2, nhead=2)
    model = build_model(cfg, 3, 2).eval()
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 11, 7)]
    ys = [np.zeros((len(x), 2), np.float32) for x in xs]
    data = SequenceSet(xs, ys, max_seq_len=100)
    batch = data.batch([0, 1, 2], torch.device("cpu"))
    assert batch.x.shape == (3, 11, 3)
    with torch.no_grad():
        together = model(batch.x, batch.mask)
        for i in range(3):
            alone = data.batch([i], torch.device("cpu"))
            out = model(alone.x, alone.mask)[0]
            torch.testing.assert_close(together[i, : len(xs[i])], out, rtol=1e-5, atol=1e-6)


def test_batches_pad_to_the_batch_maximum_and_truncate_to_max_seq_len() -> None:
    xs = [np.ones((n, 2), np.float32) for n in (3, 30, 8)]
    data = SequenceSet(xs, [x[:, :1] for x in xs], max_seq_len=10)
    assert data.lengths.tolist() == [3, 10, 8]
    b = data.batch([0, 2], torch.device("cpu"))
    assert b.x.shape == (2, 8, 2)  # longest in the batch, not max_seq_len
    assert b.mask.tolist() == [[True] * 3 + [False] * 5, [True] * 8]
    assert b.x[0, 3:].abs().sum().item() == 0


def test_transformer_heads_must_divide_hidden_size() -> None:
    with pytest.raises(ConfigError, match="hidden_size 10 must be divisible by nhead 4"):
        TrainConfig(model="transformer", hidden_size=10, nhead=4)
    # nhead does not apply to the other models.
    assert TrainConfig(model="lstm", hidden_size=10, nhead=4).hidden_size == 10


def test_config_reports_every_invalid_field() -> None:
    cfg = TrainConfig()
    object.__setattr__(cfg, "lr", -1.0)
    object.__setattr__(cfg, "k_folds", 1)
    object.__setattr__(cfg, "device", "tpu")
    fields = [f for f, _ in validation_problems(cfg)]
    assert fields == ["k_folds", "lr", "device"]


def test_folds_are_a_seeded_partition() -> None:
    stems = [f"s{i:02d}" for i in range(11)]
    folds = assign_folds(stems, 3, seed=0)
    assert [len(f) for f in folds] == [4, 4, 3]
    assert sorted(s for f in folds for s in f) == stems
    assert assign_folds(list(reversed(stems)), 3, seed=0) == folds  # order of listing irrelevant
    assert assign_folds(stems, 3, seed=1) != folds
