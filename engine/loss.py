"""Masked hybrid loss: ``alpha * MSE + (1 - alpha) * MAE`` over valid elements only.

Padding never contributes: padded steps are selected away with ``torch.where`` (not
multiplied by zero), so even a NaN a model emits at a padded step cannot leak in.
An epoch's loss is the element-weighted mean over all its valid elements, which does not
depend on how sequences were grouped into batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ErrorSums:
    """Running sums of squared and absolute error and the valid element count."""

    squared: Tensor
    absolute: Tensor
    count: Tensor

    def __iadd__(self, other: ErrorSums) -> ErrorSums:
        self.squared = self.squared + other.squared
        self.absolute = self.absolute + other.absolute
        self.count = self.count + other.count
        return self

    def hybrid(self, alpha: float) -> Tensor:
        return (alpha * self.squared + (1.0 - alpha) * self.absolute) / self.count.clamp_min(1)

    def as_floats(self, alpha: float) -> dict[str, float]:
        """Read once per epoch: the only host-device sync of the loop."""
        n = max(float(self.count), 1.0)
        mse = float(self.squared) / n
        mae = float(self.absolute) / n
        return {"loss": alpha * mse + (1.0 - alpha) * mae, "mse": mse, "mae": mae}


def masked_error_sums(pred: Tensor, target: Tensor, mask: Tensor) -> ErrorSums:
    """Sums over the valid steps of ``pred``/``target`` (B, T, C); ``mask`` is (B, T) bool."""
    diff = torch.where(mask.unsqueeze(-1), pred.float() - target.float(), 0.0)
    count = mask.sum() * target.shape[-1]
    return ErrorSums(diff.square().sum(), diff.abs().sum(), count)


def masked_hybrid_loss(pred: Tensor, target: Tensor, mask: Tensor, alpha: float) -> Tensor:
    return masked_error_sums(pred, target, mask).hybrid(alpha)
