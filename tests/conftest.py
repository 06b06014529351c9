from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# Child processes get one torch thread too, like this process (set below).
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

# One thread: deterministic, and no oversubscription on a 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KFOLD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # Engine processes the app spawns must find this checkout even without an install.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data cache folder, where a test can look into it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("KFOLD_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """An empty pair of input and label folders."""
    inputs, labels = tmp_path / "inputs", tmp_path / "labels"
    inputs.mkdir()
    labels.mkdir()
    return inputs, labels


def write_sequences(
    root: Path,
    n: int = 8,
    n_features: int = 3,
    n_targets: int = 1,
    min_len: int = 5,
    max_len: int = 20,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Tiny learnable CSV data: the target is a running mean of feature 0 plus feature 1."""
    rng = np.random.default_rng(seed)
    inputs, labels = root / "inputs", root / "labels"
    inputs.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        x = rng.normal(size=(length, n_features)).astype(np.float32)
        run = np.cumsum(x[:, 0]) / np.arange(1, length + 1)
        y = np.stack(
            [run + 0.5 * x[:, min(1, n_features - 1)] * (t + 1) for t in range(n_targets)], axis=1
        )
        np.savetxt(
            inputs / f"s{i:03d}.csv",
            x,
            delimiter=",",
            fmt="%.6f",
            header=",".join(f"f{j}" for j in range(n_features)),
            comments="",
        )
        np.savetxt(
            labels / f"s{i:03d}.csv",
            y,
            delimiter=",",
            fmt="%.6f",
            header=",".join(f"t{j}" for j in range(n_targets)),
            comments="",
        )
    return inputs, labels


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path]:
    return write_sequences(tmp_path / "data")


def tiny_args(inputs: Path, labels: Path, save: Path, **extra: object) -> list[str]:
    """CLI flags for a run that takes well under a second per epoch."""
    args = {
        "input_dir": inputs,
        "label_dir": labels,
        "model_save_dir": save,
        "batch_size": 3,
        "epochs": 2,
        "hidden_size": 8,
        "num_layers": 1,
        "nhead": 2,
        "k_folds": 2,
        "lr": 0.01,
        "run": "r",
        "device": "cpu",
        **extra,
    }
    out: list[str] = []
    for key, value in args.items():
        out += [f"--{key}", str(value)]
    return out
