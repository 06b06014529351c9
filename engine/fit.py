"""One fold's epochs: train, validate, checkpoint at each epoch boundary, stop cleanly.

State is saved only at epoch boundaries, written by a background saver while the next
epoch trains (``engine.saver``). ``last_`` holds everything an exact resume needs:
model and optimizer state, the global torch RNG (dropout), the fold's shuffle generator,
CUDA RNGs, and ``FoldProgress`` (history, best so far, early-stopping counter).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from engine import checkpoint as ck
from engine.batches import SequenceSet, epoch_batches, length_order
from engine.config import TrainConfig
from engine.loss import ErrorSums, masked_error_sums
from engine.models import SequenceModel
from engine.run import EventLog, RunFolder
from engine.saver import BackgroundSaver, snapshot


class Interrupted(Exception):
    """A stop was requested; the last epoch boundary is on disk."""


class FoldFailed(Exception):
    """The fold cannot go on (e.g. the loss became NaN); its best checkpoint is untouched."""


@dataclass
class FoldProgress:
    """The training-progress record saved in ``last_`` checkpoints."""

    fold: int
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    early_stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def is_complete(self, epochs: int) -> bool:
        return self.early_stopped or self.epoch >= epochs

    def state_dict(self, epochs: int) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "early_stopped": self.early_stopped,
            "finished": self.is_complete(epochs),
            "history": [dict(row) for row in self.history],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FoldProgress:
        return cls(
            fold=int(state["fold"]),
            epoch=int(state["epoch"]),
            best_val_loss=float(state["best_val_loss"]),
            best_epoch=int(state["best_epoch"]),
            bad_epochs=int(state["bad_epochs"]),
            early_stopped=bool(state["early_stopped"]),
            history=[dict(row) for row in state["history"]],
        )


@dataclass
class FoldTrainer:
    cfg: TrainConfig
    model: SequenceModel
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the fold's shuffle stream, on CPU on every device
    train_set: SequenceSet
    val_set: SequenceSet
    device: torch.device
    progress: FoldProgress
    folder: RunFolder
    events: EventLog
    stop: threading.Event
    data_meta: dict[str, Any]
    saver: BackgroundSaver = field(default_factory=BackgroundSaver)

    def run(self) -> FoldProgress:
        try:
            while not self.progress.is_complete(self.cfg.epochs):
                self.run_epoch()
        finally:
            # A fold ends, stops or fails only once its last finished epoch is on disk.
            self.saver.wait()
        return self.progress

    def run_epoch(self) -> None:
        """Train and validate one epoch, then hand its files to the saver."""
        cfg, p = self.cfg, self.progress
        self._check_stop()
        started = time.perf_counter()
        try:
            train = self._train_epoch()
            val = self._validate()
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise FoldFailed(
                f"fold {p.fold}: out of memory on {self.device} in epoch {p.epoch + 1}; free "
                "memory and `kfold resume`, or start a new run with a lower --batch_size "
                "or --max_seq_len"
            ) from None
        p.epoch += 1
        train_loss = train.as_floats(cfg.alpha)["loss"]
        val_loss = val.as_floats(cfg.alpha)["loss"]
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            which = "train" if not math.isfinite(train_loss) else "val"
            raise FoldFailed(
                f"fold {p.fold}: {which} loss became non-finite at epoch {p.epoch}; "
                "lower --lr or check the data for extreme values"
            )
        is_best = val_loss < p.best_val_loss
        if is_best:
            p.best_val_loss, p.best_epoch, p.bad_epochs = val_loss, p.epoch, 0
        else:
            p.bad_epochs += 1
        if cfg.patience and p.bad_epochs >= cfg.patience:
            p.early_stopped = True
        seconds = time.perf_counter() - started
        lr = float(self.optimizer.param_groups[0]["lr"])
        p.history.append(
            {
                "epoch": p.epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "seconds": round(seconds, 4),
                "is_best": is_best,
            }
        )
        ended: dict[str, Any] = {
            "fold": p.fold,
            "epoch": p.epoch,
            "epochs": cfg.epochs,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": p.best_val_loss,
            "best_epoch": p.best_epoch,
            "is_best": is_best,
            "lr": lr,
            "seconds": round(seconds, 4),
        }
        if self.device.type == "cuda":
            ended["gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        payloads = self._payloads(val_loss, is_best)
        history = [dict(row) for row in p.history]
        self.saver.submit(lambda: self._persist(payloads, history, ended))

    def _persist(
        self, payloads: dict[str, dict[str, Any]], history: list[dict[str, Any]], ended: dict
    ) -> None:
        """On the saver thread: checkpoints, then metrics, then the events, in the order a
        reader may rely on (``epoch_ended`` means the epoch is on disk)."""
        fold, epoch = ended["fold"], ended["epoch"]
        for kind, payload in payloads.items():
            path = self.folder.checkpoint(kind, self.cfg.model, fold)
            ck.save_checkpoint(path, payload, keep_previous=kind == "last")
            self.events.emit("checkpoint_saved", fold=fold, epoch=epoch, kind=kind, path=path.name)
        self.folder.replace_fold_metrics(fold, history)
        self.events.emit("epoch_ended", **ended)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted

    def _train_epoch(self) -> ErrorSums:
        self.model.train()
        cfg = self.cfg
        groups = epoch_batches(self.train_set.lengths, cfg.batch_size, self.generator, cfg.batching)
        sums = _zero_sums(self.device)
        for idx in groups:
            self._check_stop()
            batch = self.train_set.batch(idx, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            pred = self.model(batch.x, batch.mask)
            batch_sums = masked_error_sums(pred, batch.y, batch.mask)
            batch_sums.hybrid(self.cfg.alpha).backward()
            self.optimizer.step()
            # Sums stay on the device: no host sync per batch.
            sums += ErrorSums(
                batch_sums.squared.detach(), batch_sums.absolute.detach(), batch_sums.count
            )
        return sums

    @torch.no_grad()
    def _validate(self) -> ErrorSums:
        return evaluate_sums(self.model, self.val_set, self.cfg.batch_size, self.device)

    def _payloads(self, val_loss: float, is_best: bool) -> dict[str, dict[str, Any]]:
        """``best_`` (if this epoch is the best) and ``last_``, as snapshots that later
        training steps cannot change."""
        p = self.progress
        common: dict[str, Any] = {
            ck.K_FORMAT: ck.FORMAT_VERSION,
            ck.K_MODEL: self.cfg.model,
            ck.K_MODEL_STATE: snapshot(self.model.state_dict()),
            ck.K_CONFIG: self.cfg.to_dict(),
            ck.K_FOLD: p.fold,
            ck.K_EPOCH: p.epoch,
            ck.K_VAL_LOSS: val_loss,
            ck.K_DATA: dict(self.data_meta),
        }
        out: dict[str, dict[str, Any]] = {}
        if is_best:
            out["best"] = {**common, ck.K_KIND: "best"}
        out["last"] = {
            **common,
            ck.K_KIND: "last",
            ck.K_OPTIMIZER: snapshot(self.optimizer.state_dict()),
            ck.K_RNG: capture_rng(self.generator, self.device),
            ck.K_PROGRESS: p.state_dict(self.cfg.epochs),
        }
        return out


def _zero_sums(device: torch.device) -> ErrorSums:
    zero = torch.zeros((), device=device)
    return ErrorSums(zero, zero, torch.zeros((), dtype=torch.int64, device=device))


@torch.no_grad()
def evaluate_sums(
    model: SequenceModel, data: SequenceSet, batch_size: int, device: torch.device
) -> ErrorSums:
    model.eval()
    sums = _zero_sums(device)
    for batch in data.batches(length_order(data.lengths), batch_size, device):
        sums += masked_error_sums(model(batch.x, batch.mask), batch.y, batch.mask)
    return sums


def capture_rng(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["shuffle"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
