"""Generated benchmark data: variable-length sequences in memory or as CSV folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_LEN, MAX_LEN = 100, 1200


def make_sequences(
    n: int, features: int, seed: int, min_len: int = MIN_LEN, max_len: int = MAX_LEN
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` float32 (steps, features) inputs and (steps, 1) targets; the target needs
    memory (a running mean of x0) as well as the current step (x1)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len, endpoint=True, size=n)
    xs, ys = [], []
    for length in lengths:
        x = rng.standard_normal((int(length), features)).astype(np.float32)
        run = np.cumsum(x[:, 0]) / np.arange(1, length + 1)
        y = (run + 0.5 * x[:, 1 % features])[:, None].astype(np.float32)
        xs.append(x)
        ys.append(y)
    return xs, ys


def raw_float32_bytes(lengths: np.ndarray, features: int, targets: int = 1) -> int:
    return int(lengths.sum()) * (features + targets) * 4


def write_csv_folders(
    root: Path, n: int, features: int, seed: int, pool_rows: int = 4096
) -> tuple[Path, Path, np.ndarray]:
    """``n`` input/label CSV pairs under ``root`` (lengths 100-1200), and their lengths.

    Formatting millions of floats one by one would take longer than the load being
    measured, so each file is a random window into a pool of pre-formatted random rows:
    real CSV text of the same shape and size as measured data, made at disk speed."""
    rng = np.random.default_rng(seed)
    inputs, labels = root / "inputs", root / "labels"
    inputs.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    x_pool = _format_rows(rng.standard_normal((pool_rows, features)))
    y_pool = _format_rows(rng.standard_normal((pool_rows, 1)))
    x_head = ",".join(f"x{j}" for j in range(features))
    lengths = rng.integers(MIN_LEN, MAX_LEN, endpoint=True, size=n)
    starts = rng.integers(0, pool_rows - MAX_LEN, size=n)
    for i, (length, start) in enumerate(zip(lengths, starts, strict=True)):
        rows = slice(int(start), int(start + length))
        name = f"seq_{i:05d}.csv"
        (inputs / name).write_text("\n".join([x_head, *x_pool[rows]]) + "\n")
        (labels / name).write_text("\n".join(["y", *y_pool[rows]]) + "\n")
    return inputs, labels, lengths


def _format_rows(values: np.ndarray) -> list[str]:
    return [",".join(f"{v:.5f}" for v in row) for row in values]
