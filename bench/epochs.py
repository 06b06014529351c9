"""Epoch times of the engine, the seed's loop (baseline) and the bare loop, alternating.

For each model and batch size the three start from the same weights on the same data
and take turns, one epoch each, in an order that rotates every round (A B C, B C A, ...),
so drift in the machine's speed lands on all of them. The first ``warmup`` rounds are
not timed (allocator, oneDNN primitive caches). Figures are medians; ratios are ratios
of medians.

How many sequences each model trains on is set per model, to fit the whole benchmark
in ~30 minutes on 2 CPU cores: the seed's packed LSTM/GRU backward is quadratic in the
sequence length on CPU (it rebuilds a zero tensor of the whole packed batch at every
time step), ~65 s for one batch of 32 sequences of up to 1,150 steps, so those two get
48 sequences (the size of the bundled sample data); the transformer gets 96, so that at
batch 32 there are a few batches to bucket; the MLP, cheap on every side, gets enough
data for its epoch to dwarf fixed per-epoch costs.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.bare import BareLoop, prebuild
from bench.baseline_seed import SeedLoop
from bench.engine_epoch import EngineLoop
from bench.synth import make_sequences
from engine.batches import SequenceSet, bucketed_batches, chunked, length_order, shuffled_order
from engine.config import TrainConfig
from engine.models import build_model

Split = tuple[list[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class EpochPlan:
    models: tuple[str, ...] = ("mlp", "lstm", "gru", "transformer")
    batch_sizes: tuple[int, ...] = (4, 32)
    sequences: tuple[tuple[str, int], ...] = (
        ("mlp", 256),
        ("lstm", 48),
        ("gru", 48),
        ("transformer", 96),
    )
    features: int = 6
    min_len: int = 100
    max_len: int = 1200
    val_share: float = 0.2
    rounds: int = 3
    warmup: int = 1
    hidden_size: int = 128
    num_layers: int = 2
    nhead: int = 4
    lr: float = 0.001
    alpha: float = 0.7
    checkpoint_repeats: int = 5

    def sequences_for(self, model: str) -> int:
        return dict(self.sequences)[model]


def split_data(plan: EpochPlan, n: int, seed: int = 0) -> tuple[Split, Split]:
    xs, ys = make_sequences(n, plan.features, seed, plan.min_len, plan.max_len)
    n_val = max(1, round(n * plan.val_share))
    return (xs[n_val:], ys[n_val:]), (xs[:n_val], ys[:n_val])


def plan_config(plan: EpochPlan, model: str, batch_size: int) -> TrainConfig:
    return TrainConfig(
        model=model,
        batch_size=batch_size,
        epochs=10**6,
        lr=plan.lr,
        hidden_size=plan.hidden_size,
        nhead=plan.nhead,
        num_layers=plan.num_layers,
        alpha=plan.alpha,
        max_seq_len=plan.max_len,
        device="cpu",
    )


def run_epochs(plan: EpochPlan, workdir: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for model in plan.models:
        train, val = split_data(plan, plan.sequences_for(model))
        for batch_size in plan.batch_sizes:
            rows.append(compare(plan, model, batch_size, train, val, workdir, log))
    return rows


def compare(
    plan: EpochPlan,
    model: str,
    batch_size: int,
    train: Split,
    val: Split,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    cfg = plan_config(plan, model, batch_size)
    torch.manual_seed(0)
    base = build_model(cfg, plan.features, 1)
    train_set = SequenceSet(*train, cfg.max_seq_len)
    val_set = SequenceSet(*val, cfg.max_seq_len)
    groups = bucketed_batches(train_set.lengths, batch_size, torch.Generator().manual_seed(0))
    val_groups = chunked(length_order(val_set.lengths), batch_size)
    where = workdir / f"{model}-b{batch_size}"
    engine = EngineLoop(cfg, copy.deepcopy(base), train, val, where / "engine")
    contenders: dict[str, Contender] = {
        "engine": engine,
        "seed": SeedLoop(
            base, train, val, batch_size, plan.lr, plan.alpha, where / "seed" / "best.pth"
        ),
        "bare": BareLoop(
            copy.deepcopy(base),
            plan.lr,
            plan.alpha,
            prebuild(train_set, groups),
            prebuild(val_set, val_groups),
        ),
    }
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    loads: list[float] = []
    for r in range(plan.warmup + plan.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            contender = contenders[name]
            getattr(contender, "before", _nothing)()
            loads.append(os.getloadavg()[0])
            started = time.perf_counter()
            contender.epoch()
            seconds = time.perf_counter() - started
            getattr(contender, "after", _nothing)()
            if r >= plan.warmup:
                times[name].append(seconds)
            tag = "warmup" if r < plan.warmup else f"round {r - plan.warmup + 1}"
            log(f"  {model:<11} b{batch_size:<3} {tag:<8} {name:<6} {seconds:8.3f}s")
    med = {name: statistics.median(v) for name, v in times.items()}
    row: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "sequences": len(train[0]) + len(val[0]),
        "engine_s": med["engine"],
        "seed_s": med["seed"],
        "bare_s": med["bare"],
        "engine_vs_seed": med["engine"] / med["seed"],
        "engine_vs_bare": med["engine"] / med["bare"],
        "padding_bucket": padding_share(train_set.lengths, groups),
        "padding_shuffle": padding_share(
            train_set.lengths,
            chunked(shuffled_order(len(train_set), torch.Generator().manual_seed(0)), batch_size),
        ),
        "times_s": times,
        # The 1-minute load average before each epoch: other work on the machine shows here.
        "load_avg": statistics.median(loads),
    }
    if batch_size == TrainConfig().batch_size:
        costs = engine.checkpoint_costs(plan.checkpoint_repeats)
        row["checkpoint"] = {
            **costs,
            "write_share": costs["write_s"] / med["engine"],
            "stall_share": costs["snapshot_s"] / med["engine"],
        }
    return row


class Contender(Protocol):
    def epoch(self) -> float: ...


def _nothing() -> None:
    pass


def padding_share(lengths: torch.Tensor, groups: list[list[int]]) -> float:
    """Padded steps over all steps computed, for these batches."""
    computed = sum(int(lengths[g].max()) * len(g) for g in groups)
    return 1.0 - int(lengths.sum()) / computed


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
