"""The engine's own fold loop (``engine.fit.FoldTrainer``), driven one epoch at a time.

Set up as ``engine.kfold`` sets up a fold (same classes, a real run folder with events,
metrics and atomic, fsynced checkpoints), minus the manifest and the data files. In a
run, epoch k's checkpoints are written while epoch k+1 trains; to time that steady state
while taking turns with the other contenders, each turn runs an untimed epoch first and
times the next one (``before``, ``epoch``, ``after``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch

from engine import checkpoint as ck
from engine.batches import SequenceSet
from engine.config import TrainConfig
from engine.fit import FoldProgress, FoldTrainer
from engine.models import SequenceModel
from engine.run import EventLog, RunFolder


class EngineLoop:
    def __init__(
        self,
        cfg: TrainConfig,
        model: SequenceModel,
        train: tuple[list[np.ndarray], list[np.ndarray]],
        val: tuple[list[np.ndarray], list[np.ndarray]],
        folder: Path,
        shuffle_seed: int = 0,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        run = RunFolder(folder)
        n_features, n_targets = train[0][0].shape[1], train[1][0].shape[1]
        self.trainer = FoldTrainer(
            cfg,
            model,
            torch.optim.Adam(model.parameters(), lr=cfg.lr),
            torch.Generator().manual_seed(shuffle_seed),
            SequenceSet(*train, cfg.max_seq_len),
            SequenceSet(*val, cfg.max_seq_len),
            torch.device("cpu"),
            FoldProgress(fold=1),
            run,
            EventLog(run.events_jsonl, run.name),
            threading.Event(),
            {"n_features": n_features, "n_targets": n_targets},
        )

    def before(self) -> None:
        """Untimed: an epoch whose checkpoint writes are still in flight when the timed one
        starts, as every epoch of a run but the first finds the previous epoch's."""
        self.trainer.run_epoch()

    def epoch(self) -> float:
        """Timed: one engine epoch in steady state. It trains while the saver thread writes
        the previous epoch's files, and waits for them only if they are not done yet."""
        self.trainer.run_epoch()
        return float(self.trainer.progress.history[-1]["val_loss"])

    def after(self) -> None:
        """Untimed: let the writes finish, so that they do not overlap the next contender."""
        self.trainer.saver.wait()

    def checkpoint_costs(self, repeats: int) -> dict[str, float]:
        """Median seconds to snapshot the ``last_`` state (the training thread's stall)
        and to write it (atomic write with fsync, on the saver thread in a run)."""
        path = self.trainer.folder.path / "bench_last.pth"
        stalls, writes = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            payload = self.trainer._payloads(0.0, is_best=False)["last"]
            stalls.append(time.perf_counter() - started)
            started = time.perf_counter()
            ck.save_checkpoint(path, payload)
            writes.append(time.perf_counter() - started)
        return {
            "snapshot_s": float(np.median(stalls)),
            "write_s": float(np.median(writes)),
            "bytes": path.stat().st_size,
        }
