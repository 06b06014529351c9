"""The transformer's encoder layer, with cheaper dropout masks when it trains on a CPU.

In training, attention dropout keeps PyTorch's CPU attention off its fused kernels
(they take no dropout), so it runs the plain math path, and there the dropout mask is
drawn by ``bernoulli_``: outside Intel CPUs (where PyTorch uses MKL) that is a serial,
double-precision sampler, the largest single cost of a training step (~40% at 4
sequences of 650 steps, profiled on AMD EPYC). Comparing 32 random bits per element with
``p * 2**32`` gives the same Bernoulli(1 - p) keep mask (``p`` matched to within 2**-32)
in about a quarter of the time, and the 1 / (1 - p) scale is applied after ``attn @ v``
instead of to the whole attention matrix. The layer
is otherwise ``nn.TransformerEncoderLayer`` (same parameters, same state dict); in eval,
and on CUDA, it is exactly that layer, fused attention included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(shape: torch.Size, p: float) -> Tensor:
    """Bernoulli(1 - p) as bool, from the global CPU generator (saved in checkpoints):
    32 random bits per element, taken two at a time from full-range 64-bit draws (half
    the calls of drawing 32-bit integers one by one)."""
    numel = math.prod(shape)
    bits = torch.empty((numel + 1) // 2, dtype=torch.int64).random_(-(2**63), None)
    uniform = bits.view(torch.int32)[:numel].view(shape)  # uniform over all int32 values
    # Clamped: a p within 2**-33 of 1 must not wrap past the largest int32.
    return uniform >= min(round(p * 2**32), 2**32 - 1) - 2**31


def _uses_fast_dropout(module: nn.Module, p: float, x: Tensor) -> bool:
    return module.training and 0.0 < p < 1.0 and x.device.type == "cpu"


class CpuDropout(nn.Dropout):
    """``nn.Dropout`` whose mask, when training on a CPU, comes from ``keep_mask``."""

    def forward(self, x: Tensor) -> Tensor:
        if not _uses_fast_dropout(self, self.p, x):
            return super().forward(x)
        return x * keep_mask(x.shape, self.p).to(x.dtype) * (1.0 / (1.0 - self.p))


class EncoderLayer(nn.TransformerEncoderLayer):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.dropout = CpuDropout(dropout)
        self.dropout1 = CpuDropout(dropout)
        self.dropout2 = CpuDropout(dropout)

    def _sa_block(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool = False,
    ) -> Tensor:
        p = self.self_attn.dropout
        if attn_mask is not None or is_causal or not _uses_fast_dropout(self, p, x):
            return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)
        return self.dropout1(_attention(self.self_attn, x, key_padding_mask, p))


def _attention(
    mha: nn.MultiheadAttention, x: Tensor, key_padding_mask: Tensor | None, p: float
) -> Tensor:
    """Multi-head self-attention as PyTorch's math path computes it, with ``keep_mask``
    dropout on the attention weights. ``key_padding_mask``: (B, T), True or -inf at
    padded keys (the layer hands over the float form)."""
    b, t, e = x.shape
    h = mha.num_heads
    d = e // h
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).view(b, t, 3, h, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
    scores = torch.matmul(q * d**-0.5, k.transpose(-2, -1))
    if key_padding_mask is not None:
        bias = key_padding_mask
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=x.dtype).masked_fill(bias, float("-inf"))
        scores.add_(bias.view(b, 1, 1, t))  # in place: matmul keeps q and k, not its output
    # Times a float 0/1 mask: faster, forwards and backwards, than torch.where or a bool
    # factor (which is cast again in every pass).
    weights = torch.softmax(scores, -1) * keep_mask(scores.shape, p).to(scores.dtype)
    out = torch.matmul(weights, v) * (1.0 / (1.0 - p))
    return mha.out_proj(out.transpose(1, 2).reshape(b, t, e))
