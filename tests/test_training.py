"""Every model trains on the shipped sample data, and its val loss falls."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from engine.config import TrainConfig
from engine.kfold import start_run


@pytest.mark.parametrize("model", ["mlp", "lstm", "gru", "transformer"])
def test_each_model_learns_the_sample_data(model: str, tmp_path: Path) -> None:
    cfg = TrainConfig(
        model=model,
        input_dir=str(ROOT / "data_train/inputs"),
        label_dir=str(ROOT / "data_train/labels"),
        model_save_dir=str(tmp_path),
        run="r",
        epochs=4,
        k_folds=2,
        batch_size=8,
        hidden_size=16,
        num_layers=1,
        nhead=2,
        lr=0.01,
        max_seq_len=300,
        device="cpu",
    )
    outcome = start_run(cfg, threading.Event())
    assert outcome.status == "finished"
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    assert list(metrics.columns) == [
        "fold",
        "epoch",
        "train_loss",
        "val_loss",
        "lr",
        "seconds",
        "is_best",
    ]
    assert len(metrics) == 8
    for _, rows in metrics.groupby("fold"):
        val = rows["val_loss"].tolist()
        assert val[-1] < val[0], f"{model}: val loss did not fall: {val}"
    assert outcome.manifest["summary"]["folds_finished"] == 2
    for k in (1, 2):
        assert (tmp_path / "r" / f"best_{model}_fold_{k}.pth").exists()
        assert (tmp_path / "r" / f"last_{model}_fold_{k}.pth").exists()


def test_patience_stops_a_fold_early(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="mlp",
        input_dir=str(ROOT / "data_train/inputs"),
        label_dir=str(ROOT / "data_train/labels"),
        model_save_dir=str(tmp_path),
        run="r",
        epochs=50,
        k_folds=2,
        batch_size=16,
        hidden_size=8,
        num_layers=1,
        lr=0.5,
        max_seq_len=50,
        patience=2,
        device="cpu",
    )
    outcome = start_run(cfg, threading.Event())
    folds = outcome.manifest["folds"]
    assert all(f["status"] == "early_stopped" for f in folds)
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    for f in folds:
        rows = metrics[metrics.fold == f["fold"]]
        assert len(rows) == f["epochs_done"] == f["best_epoch"] + 2 < 50
