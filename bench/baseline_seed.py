"""BASELINE: the seed script's training loop (../shared/seed/*.txt), completed plainly.

This is the reference the engine is measured against, not engine code. The loop body of
``seed_train_epoch`` and ``seed_validate`` is the seed's ``train()`` as written there: a
per-sample Python loop builds the mask, ``isinstance`` picks the call, LSTM/GRU get
``model(inputs, lengths)`` and pack their input (as that call implies), validation reads
``.item()`` per batch, and a ``DataLoader`` pads each shuffled batch to its own longest
sequence. What the seed leaves out (dataset, collate, loss, model classes) is filled in
the plain way. The models hold the engine's exact parameters (``seed_model``), so both
sides train the same network from the same weights.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from torch.utils.data import DataLoader, Dataset

from engine import models as engine_models


class SequenceDataset(Dataset[tuple[Tensor, Tensor]]):
    def __init__(self, inputs: list[np.ndarray], labels: list[np.ndarray]) -> None:
        self.inputs = [torch.from_numpy(a) for a in inputs]
        self.labels = [torch.from_numpy(a) for a in labels]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.inputs[i], self.labels[i]


def collate_fn(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    inputs, labels = zip(*batch, strict=True)
    lengths = torch.tensor([len(x) for x in inputs])
    return pad_sequence(inputs, batch_first=True), pad_sequence(labels, batch_first=True), lengths


class HybridLoss(nn.Module):
    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        mask = mask.unsqueeze(-1).expand_as(outputs)
        mse = (((outputs - targets) ** 2) * mask).sum() / mask.sum()
        mae = ((outputs - targets).abs() * mask).sum() / mask.sum()
        return self.alpha * mse + (1 - self.alpha) * mae


class MLP(nn.Module):
    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Recurrent(nn.Module):
    def __init__(self, rnn: nn.RNNBase, head: nn.Linear) -> None:
        super().__init__()
        self.rnn, self.head = rnn, head

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(out)


class LSTM(_Recurrent):
    pass


class GRU(_Recurrent):
    pass


class Transformer(nn.Module):
    def __init__(self, engine: engine_models.Transformer) -> None:
        super().__init__()
        layer = engine.encoder.layers[0]
        self.proj, self.head = copy.deepcopy(engine.proj), copy.deepcopy(engine.head)
        self.pos = engine_models.PositionalEncoding(engine.pos.d_model)
        # The plain construction: nested tensors on, as nn.TransformerEncoder defaults.
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                d_model=layer.linear1.in_features,
                nhead=layer.self_attn.num_heads,
                dim_feedforward=layer.linear1.out_features,
                dropout=0.1,
                batch_first=True,
            ),
            len(engine.encoder.layers),
        )
        self.encoder.load_state_dict(engine.encoder.state_dict())

    def forward(self, x: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.encoder(self.pos(self.proj(x)), src_key_padding_mask=src_key_padding_mask)
        return self.head(h)


def seed_model(engine_model: engine_models.SequenceModel) -> nn.Module:
    """The seed-style model, holding a copy of the engine model's weights."""
    m = engine_model
    if isinstance(m, engine_models.MLP):
        return MLP(copy.deepcopy(m.net))
    if isinstance(m, engine_models.LSTM):
        return LSTM(copy.deepcopy(m.rnn), copy.deepcopy(m.head))
    if isinstance(m, engine_models.GRU):
        return GRU(copy.deepcopy(m.rnn), copy.deepcopy(m.head))
    if isinstance(m, engine_models.Transformer):
        return Transformer(m)
    raise TypeError(f"no seed-style model for {type(m).__name__}")


def seed_loaders(
    train: tuple[list[np.ndarray], list[np.ndarray]],
    val: tuple[list[np.ndarray], list[np.ndarray]],
    batch_size: int,
    seed: int,
) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        SequenceDataset(*train),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_fn,
        generator=g,
    )
    val_loader = DataLoader(SequenceDataset(*val), batch_size=batch_size, collate_fn=collate_fn)
    return train_loader, val_loader


def seed_train_epoch(
    model: nn.Module,
    train_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    criterion: HybridLoss,
    device: torch.device,
) -> None:
    model.train()
    for inputs, labels, lengths in train_loader:
        inputs, labels, lengths = inputs.to(device), labels.to(device), lengths.to(device)

        # 生成mask
        batch_size, seq_len = inputs.shape[:2]
        mask = torch.zeros(batch_size, seq_len, device=device)
        for i in range(batch_size):
            mask[i, : lengths[i]] = 1

        optimizer.zero_grad()

        # 模型前向
        if isinstance(model, Transformer):
            src_key_padding_mask = mask == 0
            outputs = model(inputs, src_key_padding_mask=src_key_padding_mask)
        elif isinstance(model, (LSTM, GRU)):
            outputs = model(inputs, lengths)
        else:
            outputs = model(inputs)

        # 计算损失
        loss = criterion(outputs, labels, mask)
        loss.backward()
        optimizer.step()


def seed_validate(
    model: nn.Module, val_loader: DataLoader, criterion: HybridLoss, device: torch.device
) -> float:
    model.eval()
    val_loss = 0.0
    with torch.no_grad():
        for inputs, labels, lengths in val_loader:
            inputs, labels, lengths = inputs.to(device), labels.to(device), lengths.to(device)

            batch_size, seq_len = inputs.shape[:2]
            mask = torch.zeros(batch_size, seq_len, device=device)
            for i in range(batch_size):
                mask[i, : lengths[i]] = 1

            if isinstance(model, Transformer):
                src_key_padding_mask = mask == 0
                outputs = model(inputs, src_key_padding_mask=src_key_padding_mask)
            elif isinstance(model, (LSTM, GRU)):
                outputs = model(inputs, lengths)
            else:
                outputs = model(inputs)

            val_loss += criterion(outputs, labels, mask).item()

    return val_loss / len(val_loader)


class SeedLoop:
    """One fold of the seed's ``train()``, an epoch at a time, saving its best model."""

    def __init__(
        self,
        engine_model: engine_models.SequenceModel,
        train: tuple[list[np.ndarray], list[np.ndarray]],
        val: tuple[list[np.ndarray], list[np.ndarray]],
        batch_size: int,
        lr: float,
        alpha: float,
        save_path: Path,
        seed: int = 0,
    ) -> None:
        self.device = torch.device("cpu")
        self.model = seed_model(engine_model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.criterion = HybridLoss(alpha)
        self.train_loader, self.val_loader = seed_loaders(train, val, batch_size, seed)
        self.save_path = save_path
        self.best_val_loss = float("inf")

    def epoch(self) -> float:
        with warnings.catch_warnings():
            # The plain TransformerEncoder's eval fast path builds nested tensors and torch
            # warns that their API is a prototype: noise about the baseline's construction,
            # not about the bench, printed mid-run. Only that warning is silenced.
            warnings.filterwarnings(
                "ignore",
                message=r"The PyTorch API of nested tensors is in prototype stage",
                category=UserWarning,
            )
            seed_train_epoch(
                self.model, self.train_loader, self.optimizer, self.criterion, self.device
            )
            avg_val_loss = seed_validate(self.model, self.val_loader, self.criterion, self.device)
        if avg_val_loss < self.best_val_loss:
            self.best_val_loss = avg_val_loss
            os.makedirs(os.path.dirname(self.save_path), exist_ok=True)
            torch.save(self.model.state_dict(), self.save_path)
        return avg_val_loss
