"""GRU training on a CPU at small batch sizes, with the backward pass written out.

PyTorch has no fused GRU kernel on CPU (the LSTM gets oneDNN's): ``nn.GRU`` runs a C++
loop of small ops per time step and autograd records every one of them, so at the
seed's batch size of 4 a step of 650 time steps is ~90% bookkeeping. Here the forward
runs the same recurrence without autograd and keeps the gates, and one autograd node per
layer replays it backwards: per time step one small matmul and three elementwise ops;
everything that does not depend on the next step (gate derivatives, input and weight
gradients) is done for all steps at once. About 2x faster at batch 4; beyond ~16
sequences the big per-step matmuls dominate and ``nn.GRU`` is as fast, so it is used
there (and on CUDA, under autocast, and in eval). Same parameters, same function:
outputs match ``nn.GRU`` to float rounding, gradients pass ``gradcheck``.

PyTorch's GRU, gates in the order (r, z, n) of ``weight_ih``/``weight_hh``:
    r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n)
    h' = (1 - z) * n + z * h,  with gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh
Backward, for g = dL/dh' (from the output and from the next step):
    da_n = g (1 - z)(1 - n^2),  da_z = g (h - n) z (1 - z),  da_r = da_n gh_n r (1 - r)
    dgi = [da_r, da_z, da_n],  dgh = [da_r, da_z, da_n r],  dL/dh = g z + dgh W_hh
so dgh = g * M with M = [(1 - z)(1 - n^2) gh_n r (1 - r), (h - n) z (1 - z),
(1 - z)(1 - n^2) r], known for every step before the backward loop starts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# Largest batch that takes this path (measured crossover with nn.GRU: ~16).
MAX_BATCH = 8


def use_cpu_gru(rnn: nn.Module, x: Tensor) -> bool:
    return (
        isinstance(rnn, nn.GRU)
        and rnn.training
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.shape[0] <= MAX_BATCH
        and rnn.batch_first
        and not rnn.bidirectional
        and rnn.bias
        and rnn.proj_size == 0
        and not torch.is_autocast_enabled("cpu")
        and (rnn.dropout == 0 or rnn.num_layers == 1)
    )


def cpu_gru(rnn: nn.GRU, x: Tensor) -> Tensor:
    """The outputs of ``rnn(x)[0]`` for batch-first ``x`` and a zero initial state."""
    out = x
    for layer in range(rnn.num_layers):
        weights = [getattr(rnn, f"{name}_l{layer}") for name in _NAMES]
        out = _GRULayer.apply(out, *weights)
    return out


_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
    ) -> Tensor:
        b, steps, _ = x.shape
        h = w_hh.shape[1]
        gi = torch.addmm(b_ih, x.reshape(b * steps, -1), w_ih.t())
        gi = gi.view(b, steps, 3 * h).transpose(0, 1).contiguous()  # (T, B, 3H)
        hs = x.new_zeros(steps + 1, b, h)  # h_0 = 0, then every step's output
        gh = x.new_empty(steps, b, 3 * h)
        rz = x.new_empty(steps, b, 2 * h)
        n = x.new_empty(steps, b, h)
        w_hh_t = w_hh.t()
        for t, (gi_t, gh_t, rz_t, n_t) in enumerate(
            zip(gi.unbind(0), gh.unbind(0), rz.unbind(0), n.unbind(0), strict=True)
        ):
            torch.addmm(b_hh, hs[t], w_hh_t, out=gh_t)
            torch.add(gi_t[:, : 2 * h], gh_t[:, : 2 * h], out=rz_t).sigmoid_()
            torch.addcmul(gi_t[:, 2 * h :], rz_t[:, :h], gh_t[:, 2 * h :], out=n_t).tanh_()
            torch.lerp(n_t, hs[t], rz_t[:, h:], out=hs[t + 1])
        ctx.save_for_backward(x, w_ih, w_hh, hs, gh[:, :, 2 * h :], rz, n)
        return hs[1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w_ih, w_hh, hs, gh_n, rz, n = ctx.saved_tensors
        steps, b, h = n.shape
        r, z = rz[:, :, :h], rz[:, :, h:]
        h_prev = hs[:-1]
        a = (1 - z) * (1 - n * n)
        m = torch.stack([a * gh_n * r * (1 - r), (h_prev - n) * z * (1 - z), a * r], 2)
        g = grad_out.transpose(0, 1)  # (T, B, H)
        dh = torch.empty_like(n)  # dL/dh_t, all of it, per step
        dgh_t = x.new_empty(b, 3, h)
        carry = x.new_zeros(b, h)
        mm_t = x.new_empty(b, h)
        z_c = z.contiguous()
        for t in range(steps - 1, -1, -1):
            dh_t = torch.add(g[t], carry, out=dh[t])
            torch.mul(dh_t.unsqueeze(1), m[t], out=dgh_t)
            torch.mm(dgh_t.view(b, 3 * h), w_hh, out=mm_t)
            carry = torch.addcmul(mm_t, dh_t, z_c[t])
        dgh = (dh.unsqueeze(2) * m).view(steps * b, 3 * h)
        dgi = dgh.clone()
        dgi[:, 2 * h :] = (dh * a).view(steps * b, h)
        x_t = x.transpose(0, 1).reshape(steps * b, -1)
        d_x = None
        if ctx.needs_input_grad[0]:  # the first layer's input is data: no gradient
            d_x = (dgi @ w_ih).view(steps, b, -1).transpose(0, 1)
        d_w_ih = dgi.t() @ x_t
        d_w_hh = dgh.t() @ h_prev.reshape(steps * b, h)
        return d_x, d_w_ih, d_w_hh, dgi.sum(0), dgh.sum(0)
