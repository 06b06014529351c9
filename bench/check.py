"""The engine's training step and the bare loop, on the same batches, reach the same loss.

This is what makes the bare loop a fair floor: it computes exactly what the engine does
(same weights, same batches in the same order, same dropout draws), only without the
engine's bookkeeping. Checked by ``python -m bench --quick`` and by tests/test_bench.py.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.bare import bare_train_epoch, prebuild
from bench.engine_epoch import EngineLoop
from bench.synth import make_sequences
from engine.batches import SequenceSet, epoch_batches
from engine.config import TrainConfig
from engine.models import build_model


def same_loss_check(model: str, batching: str = "bucket", workdir: Path | None = None) -> dict:
    features, shuffle_seed = 3, 7
    xs, ys = make_sequences(14, features, seed=1, min_len=5, max_len=60)
    train, val = (xs[4:], ys[4:]), (xs[:4], ys[:4])
    cfg = TrainConfig(
        model=model,
        batch_size=3,
        hidden_size=8,
        num_layers=1,
        nhead=2,
        lr=0.01,
        device="cpu",
        batching=batching,
    )
    torch.manual_seed(0)
    base = build_model(cfg, features, 1)
    train_set = SequenceSet(*train, cfg.max_seq_len)
    groups = epoch_batches(
        train_set.lengths, cfg.batch_size, torch.Generator().manual_seed(shuffle_seed), batching
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        engine = EngineLoop(cfg, copy.deepcopy(base), train, val, Path(tmp), shuffle_seed)
        torch.manual_seed(123)  # dropout draws, identical on both sides
        engine_sums = engine.trainer._train_epoch()
    bare_model = copy.deepcopy(base)
    optimizer = torch.optim.Adam(bare_model.parameters(), lr=cfg.lr)
    torch.manual_seed(123)
    bare_sums = bare_train_epoch(bare_model, optimizer, prebuild(train_set, groups), cfg.alpha)
    engine_state = engine.trainer.model.state_dict()
    result: dict[str, Any] = {
        "model": model,
        "batches": len(groups),
        "engine_loss": engine_sums.as_floats(cfg.alpha)["loss"],
        "bare_loss": bare_sums.as_floats(cfg.alpha)["loss"],
        "same_weights": all(
            torch.equal(v, engine_state[k]) for k, v in bare_model.state_dict().items()
        ),
    }
    result["same"] = result["engine_loss"] == result["bare_loss"] and result["same_weights"]
    return result
