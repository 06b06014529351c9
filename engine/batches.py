"""Sequences as tensors, grouped into batches by a generator, padded per batch, masked.

Kept apart from ``data.py`` (files, validation, cache) because this is the per-epoch hot
path and works on tensors only. Batches are padded to the longest sequence in the batch,
never to ``max_seq_len``. With lengths spread over 100-1200 steps, a plainly shuffled
batch of 32 is about 45% padding; length buckets cut that to a few percent, and every
padded step is work thrown away (quadratic work, in attention).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


@dataclass(frozen=True)
class Batch:
    x: Tensor  # (B, T, F)
    y: Tensor  # (B, T, C)
    mask: Tensor  # (B, T) bool, True at valid steps
    lengths: Tensor  # (B,) int64
    indices: tuple[int, ...]  # positions in the SequenceSet


class SequenceSet:
    """Inputs and labels as float32 tensors, truncated to ``max_seq_len`` (seed behaviour)."""

    def __init__(
        self, inputs: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_seq_len: int
    ) -> None:
        # from_numpy shares memory with the loaded arrays: truncation is a view, not a copy.
        self.x = [torch.from_numpy(np.ascontiguousarray(a[:max_seq_len])) for a in inputs]
        self.y = [torch.from_numpy(np.ascontiguousarray(a[:max_seq_len])) for a in labels]
        self.lengths = torch.tensor([len(a) for a in self.x], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: Sequence[int], device: torch.device) -> Batch:
        idx = tuple(int(i) for i in indices)
        lengths = self.lengths[list(idx)]
        x = pad_sequence([self.x[i] for i in idx], batch_first=True)
        y = pad_sequence([self.y[i] for i in idx], batch_first=True)
        steps = x.shape[1]
        mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        if device.type != "cuda":
            return Batch(x, y, mask, lengths, idx)
        # A copy from pageable memory blocks the host until the GPU has caught up; from
        # pinned memory it is queued, so the next batch is built while this one trains.
        return Batch(
            x.pin_memory().to(device, non_blocking=True),
            y.pin_memory().to(device, non_blocking=True),
            mask.pin_memory().to(device, non_blocking=True),
            lengths,
            idx,
        )

    def batches(
        self, order: Sequence[int], batch_size: int, device: torch.device
    ) -> Iterator[Batch]:
        for idx in chunked(order, batch_size):
            yield self.batch(idx, device)


def shuffled_order(n: int, generator: torch.Generator) -> list[int]:
    """The seed's plain shuffle, drawn from the fold's own generator (saved on checkpoints)."""
    return torch.randperm(n, generator=generator).tolist()


def chunked(order: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]


# Sequences are sorted by length within pools of this many batches. A pool, not the whole
# set, so that which sequences share a batch still changes from epoch to epoch.
POOL_BATCHES = 50


def bucketed_batches(
    lengths: Tensor, batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffle, sort each pool of ``POOL_BATCHES`` batches by length, cut it into batches,
    shuffle the batches. Every sequence appears once; only the last batch may be short.

    Two ``randperm`` draws from the fold's generator per epoch and nothing else, so the
    generator state in ``last_`` checkpoints replays the epoch exactly."""
    n = len(lengths)
    perm = torch.randperm(n, generator=generator)
    pool = batch_size * POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, n, pool):
        part = perm[start : start + pool]
        # Stable, so equal lengths keep their random order.
        part = part[torch.argsort(lengths[part], stable=True)]
        batches += chunked(part.tolist(), batch_size)
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def epoch_batches(
    lengths: Tensor, batch_size: int, generator: torch.Generator, batching: str
) -> list[list[int]]:
    """One training epoch's batches for ``--batching bucket|shuffle``."""
    if batching == "shuffle":
        return chunked(shuffled_order(len(lengths), generator), batch_size)
    return bucketed_batches(lengths, batch_size, generator)


def length_order(lengths: Tensor) -> list[int]:
    """Shortest first, for evaluation: needs no generator and pads little. Training and
    ``kfold eval`` both score a fold this way, so eval reproduces the recorded losses."""
    return torch.argsort(lengths, stable=True).tolist()
