"""The floor: the same model trained on padded batches built once, in memory, beforehand.

No batching work, events, checkpoints, metrics or stop checks: forward, masked loss,
backward, step; then the validation forward passes. The engine's epoch over this one's
is the engine's overhead. It takes the engine's own batches, so padding is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from engine.batches import SequenceSet
from engine.loss import ErrorSums, masked_error_sums
from engine.models import SequenceModel

Prebuilt = list[tuple[Tensor, Tensor, Tensor]]  # (x, y, mask)


def prebuild(data: SequenceSet, groups: Sequence[Sequence[int]]) -> Prebuilt:
    cpu = torch.device("cpu")
    return [(b.x, b.y, b.mask) for b in (data.batch(idx, cpu) for idx in groups)]


def bare_train_epoch(
    model: SequenceModel, optimizer: torch.optim.Optimizer, batches: Prebuilt, alpha: float
) -> ErrorSums:
    model.train()
    sums = ErrorSums(torch.zeros(()), torch.zeros(()), torch.zeros((), dtype=torch.int64))
    for x, y, mask in batches:
        optimizer.zero_grad(set_to_none=True)
        part = masked_error_sums(model(x, mask), y, mask)
        part.hybrid(alpha).backward()
        optimizer.step()
        sums += ErrorSums(part.squared.detach(), part.absolute.detach(), part.count)
    return sums


@torch.no_grad()
def bare_validate(model: SequenceModel, batches: Prebuilt) -> ErrorSums:
    model.eval()
    sums = ErrorSums(torch.zeros(()), torch.zeros(()), torch.zeros((), dtype=torch.int64))
    for x, y, mask in batches:
        sums += masked_error_sums(model(x, mask), y, mask)
    return sums


class BareLoop:
    def __init__(
        self,
        model: SequenceModel,
        lr: float,
        alpha: float,
        train_batches: Prebuilt,
        val_batches: Prebuilt,
    ) -> None:
        self.model, self.alpha = model, alpha
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.train_batches, self.val_batches = train_batches, val_batches

    def epoch(self) -> float:
        bare_train_epoch(self.model, self.optimizer, self.train_batches, self.alpha)
        return bare_validate(self.model, self.val_batches).as_floats(self.alpha)["loss"]
