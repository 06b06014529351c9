"""Sequences as tensors, shuffled by a generator, padded per batch, masked vectorised.

Kept apart from ``data.py`` (files, validation, cache) because this is the per-epoch hot
path and works on tensors only. Batches are padded to the longest sequence in the batch,
never to ``max_seq_len``.
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
        non_blocking = device.type == "cuda"
        return Batch(
            x.to(device, non_blocking=non_blocking),
            y.to(device, non_blocking=non_blocking),
            mask.to(device, non_blocking=non_blocking),
            lengths,
            idx,
        )

    def batches(
        self, order: Sequence[int], batch_size: int, device: torch.device
    ) -> Iterator[Batch]:
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device)


def shuffled_order(n: int, generator: torch.Generator) -> list[int]:
    """The seed's plain shuffle, drawn from the fold's own generator (saved on checkpoints)."""
    return torch.randperm(n, generator=generator).tolist()
