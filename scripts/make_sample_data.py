"""Write the small demo data set in data_train/ (48 sequences, 4 inputs, 1 target).

    python scripts/make_sample_data.py [--out data_train]

The target mixes a per-step term with terms that need memory, so a per-step MLP can
learn only part of it and a recurrent or attention model should clearly beat it:

    y_t = 0.6*x0_t + 0.8*m_t + 0.5*x2_{t-3}*x3_t + noise,   m_t = 0.9*m_{t-1} + 0.436*x1_t

m is an exponential moving average of x1 scaled to unit variance. A fixed seed and fixed
formatting make every re-run byte-identical.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 2024
N_SEQUENCES = 48
MIN_LEN, MAX_LEN = 100, 1200
DECAY = 0.9
LAG = 3


def make_sequence(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
    """One sequence: inputs (length, 4) and target (length,)."""
    x = np.empty((length, 4))
    x[:, :3] = rng.standard_normal((length, 3))
    # x3 is a slow wave with a random period and phase, like a daily or seasonal signal.
    period = rng.uniform(20.0, 80.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    x[:, 3] = np.sqrt(2.0) * np.sin(2 * np.pi * np.arange(length) / period + phase)
    ema = np.empty(length)
    m = 0.0
    gain = np.sqrt(1.0 - DECAY**2)  # keeps the moving average at unit variance
    for t in range(length):
        m = DECAY * m + gain * x[t, 1]
        ema[t] = m
    lagged = np.concatenate([np.zeros(LAG), x[:-LAG, 2]])
    y = 0.6 * x[:, 0] + 0.8 * ema + 0.5 * lagged * x[:, 3] + 0.05 * rng.standard_normal(length)
    return x, y


def write_csv(path: Path, header: str, rows: np.ndarray) -> None:
    lines = [header] + [",".join(f"{v:.5f}" for v in row) for row in rows]
    # Fixed "\n" line ends so the bytes are the same on every platform.
    path.write_bytes(("\n".join(lines) + "\n").encode("ascii"))


def main(argv: list[str] | None = None) -> None:
    default_out = Path(__file__).resolve().parent.parent / "data_train"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out, help="output folder")
    args = parser.parse_args(argv)
    inputs_dir, labels_dir = args.out / "inputs", args.out / "labels"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    lengths = rng.integers(MIN_LEN, MAX_LEN, endpoint=True, size=N_SEQUENCES)
    for i, length in enumerate(lengths):
        x, y = make_sequence(rng, int(length))
        # Round first so that -0.000004 is written as 0.00000, not -0.00000.
        x, y = np.round(x, 5) + 0.0, np.round(y, 5) + 0.0
        write_csv(inputs_dir / f"seq_{i:03d}.csv", "x0,x1,x2,x3", x)
        write_csv(labels_dir / f"seq_{i:03d}.csv", "y", y[:, None])
    total = sum(p.stat().st_size for d in (inputs_dir, labels_dir) for p in d.glob("seq_*.csv"))
    steps = int(lengths.sum())
    print(f"wrote {N_SEQUENCES} sequences ({steps} steps, {total / 1e6:.2f} MB) to {args.out}")


if __name__ == "__main__":
    main()
