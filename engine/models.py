"""The four sequence models behind one forward signature: ``model(x, mask) -> y``.

``x`` is (B, T, F) float, ``mask`` is (B, T) bool (True at valid steps), ``y`` is
(B, T, C). Padding always sits after a sequence's end, so unidirectional RNNs need no
packing: the steps before the padding never see it (and packing costs 18-37x on CPU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.attention import EncoderLayer
from engine.config import TrainConfig
from engine.errors import ConfigError
from engine.gru import cpu_gru, use_cpu_gru


class SequenceModel(nn.Module):
    # Set from --amp by build_model. A plain attribute, not a buffer, so checkpoints are the
    # same either way, and every caller (fit, eval) gets the same numerics without knowing.
    autocast: bool = False

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.autocast:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.compute(x, mask)
        return self.compute(x, mask)

    def compute(self, x: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MLP(SequenceModel):
    """Per-step MLP: each output sees only its own step."""

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_in
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*blocks)

    def compute(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x)


class _Recurrent(SequenceModel):
    rnn_type: type[nn.RNNBase] = nn.LSTM

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = self.rnn_type(n_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def compute(self, x: Tensor, mask: Tensor) -> Tensor:
        if use_cpu_gru(self.rnn, x):  # small-batch GRU training on CPU (engine.gru)
            return self.head(cpu_gru(self.rnn, x))
        out, _ = self.rnn(x)
        return self.head(out)


class LSTM(_Recurrent):
    rnn_type = nn.LSTM


class GRU(_Recurrent):
    rnn_type = nn.GRU


class PositionalEncoding(nn.Module):
    """Sinusoidal encoding computed for the batch's length; nothing length-bound is saved."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", torch.empty(0, d_model), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        if self.table.shape[0] < steps or self.table.device != x.device:
            self.table = self._build(max(steps, 2 * self.table.shape[0]), x.device)
        return x + self.table[:steps].to(x.dtype)

    def _build(self, steps: int, device: torch.device) -> Tensor:
        pos = torch.arange(steps, dtype=torch.float32, device=device).unsqueeze(1)
        half = torch.arange(0, self.d_model, 2, dtype=torch.float32, device=device)
        freq = torch.exp(half * (-math.log(10000.0) / self.d_model))
        table = torch.zeros(steps, self.d_model, device=device)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)[:, : self.d_model // 2]
        return table


class Transformer(SequenceModel):
    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int, nhead: int) -> None:
        super().__init__()
        if nhead < 1 or hidden % nhead != 0:
            raise ConfigError(f"--hidden_size {hidden} must be divisible by --nhead {nhead}")
        self.proj = nn.Linear(n_in, hidden)
        self.pos = PositionalEncoding(hidden)
        # nn.TransformerEncoderLayer with cheaper dropout masks on CPU (engine.attention).
        layer = EncoderLayer(d_model=hidden, nhead=nhead, dim_feedforward=4 * hidden, dropout=0.1)
        # Nested tensors would hand back zeros at padded steps only in eval; keeping the
        # dense path makes train and eval outputs share one layout.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, n_out)

    def compute(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.pos(self.proj(x))
        h = self.encoder(h, src_key_padding_mask=~mask)
        return self.head(h)


def build_model(cfg: TrainConfig, n_features: int, n_targets: int) -> SequenceModel:
    model = _build(cfg, n_features, n_targets)
    model.autocast = cfg.amp
    return model


def _build(cfg: TrainConfig, n_features: int, n_targets: int) -> SequenceModel:
    hidden, layers = cfg.hidden_size, cfg.num_layers
    if cfg.model == "mlp":
        return MLP(n_features, n_targets, hidden, layers)
    if cfg.model == "lstm":
        return LSTM(n_features, n_targets, hidden, layers)
    if cfg.model == "gru":
        return GRU(n_features, n_targets, hidden, layers)
    if cfg.model == "transformer":
        return Transformer(n_features, n_targets, hidden, layers, cfg.nhead)
    raise ConfigError(f"--model: unknown model {cfg.model!r}")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
