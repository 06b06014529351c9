"""The engine's own fold loop (``engine.fit.FoldTrainer``), driven one epoch at a time.

Set up as ``engine.kfold`` sets up a fold (same classes, a real run folder with events,
metrics and atomic, fsynced checkpoints), minus the manifest and the data files.
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

    def epoch(self) -> float:
        """One engine epoch, including the wait for its checkpoint writes: in a real run
        they overlap the next epoch, so this is the engine's epoch at its slowest."""
        self.trainer.run_epoch()
        self.trainer.saver.wait()
        return float(self.trainer.progress.history[-1]["val_loss"])

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
