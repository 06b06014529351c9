"""What the monitor shows about a run, rebuilt from run.json and events.jsonl alone.

Plain Python (no Textual), so it can be tested without a screen and rebuilt at any time:
the app can quit, crash or reattach and show the same thing.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.run import RunFolder, read_events

FINAL_FOLD_STATES = ("finished", "early_stopped", "failed")


@dataclass
class FoldView:
    fold: int
    epochs: int
    status: str = "pending"
    epoch: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    started: float | None = None  # time of this attempt's fold_started
    elapsed: float = 0.0  # training seconds of the epochs seen since started
    epochs_timed: int = 0
    val_history: dict[int, float] = field(default_factory=dict)
    epoch_seconds: dict[int, float] = field(default_factory=dict)
    earlier_seconds: float = 0.0  # training seconds of the epochs before this attempt

    @property
    def elapsed_seconds(self) -> float | None:
        """Training time of the fold over all its attempts (a resume does not reset it)."""
        if self.status == "running" and self.started is not None:
            return self.earlier_seconds + time.time() - self.started
        if self.epochs_timed:
            return self.earlier_seconds + self.elapsed
        return sum(self.epoch_seconds.values()) or None

    @property
    def eta_seconds(self) -> float | None:
        if self.status != "running" or not self.epochs_timed:
            return None
        return (self.epochs - self.epoch) * self.elapsed / self.epochs_timed


@dataclass
class RunView:
    path: Path
    name: str = ""
    model: str = "?"
    status: str = "starting"
    k_folds: int = 0
    epochs: int = 0
    device: str = "?"
    device_name: str = ""
    gpu_memory_bytes: int | None = None
    pid: int | None = None
    cv_mean: float | None = None
    cv_std: float | None = None
    folds: dict[int, FoldView] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    _epoch_times: deque[float] = field(default_factory=lambda: deque(maxlen=30))
    changed_folds: set[int] = field(default_factory=set)
    log_serial: int = 0  # lines ever logged, so a UI can append only the new ones
    # (fold, epoch) cells whose text may have changed since the UI last looked: a new val
    # loss, or a best mark that moved. Keeps table updates proportional to what arrived.
    dirty_cells: set[tuple[int, int]] = field(default_factory=set)

    @classmethod
    def from_folder(cls, path: Path | str) -> RunView:
        view = cls(Path(path))
        view.load_manifest()
        for event in read_events(view.path / "events.jsonl"):
            view.apply(event)
        return view

    def load_manifest(self) -> None:
        try:
            m = RunFolder(self.path).read_manifest()
        except RunError:
            return
        cfg = m.get("config", {})
        self.name = m.get("name", self.path.name)
        self.model = cfg.get("model", "?")
        self.k_folds = int(cfg.get("k_folds", 0))
        self.epochs = int(cfg.get("epochs", 0))
        if self.status == "starting":
            self.status = m.get("status", "starting")
        for entry in m.get("folds", []):
            f = self.fold(int(entry["fold"]))
            f.status = entry.get("status", f.status)
            f.epoch = int(entry.get("epochs_done") or 0)
            f.best_val_loss = entry.get("best_val_loss")
            f.best_epoch = entry.get("best_epoch")
        self._summarize()

    def fold(self, k: int) -> FoldView:
        if k not in self.folds:
            self.folds[k] = FoldView(k, self.epochs)
        return self.folds[k]

    def apply(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        when = float(e.get("time", time.time()))
        if kind == "run_started":
            self.status = "running"
            self.pid = e.get("pid")
            self.device = str(e.get("device", "?"))
            self.device_name = str(e.get("device_name", ""))
            self.model = str(e.get("model", self.model))
            self.k_folds = int(e.get("folds", self.k_folds))
            self.epochs = int(e.get("epochs", self.epochs))
            for k in range(1, self.k_folds + 1):
                self.fold(k).epochs = self.epochs
            self._epoch_times.clear()
            verb = "resumed" if e.get("resumed") else "started"
            self._log(when, f"run {verb} on {self.device} ({e.get('parameters', '?')} parameters)")
        elif kind == "fold_started":
            f = self.fold(int(e["fold"]))
            f.status, f.started, f.elapsed, f.epochs_timed = "running", when, 0.0, 0
            f.epochs = int(e.get("epochs", f.epochs))
            f.epoch = int(e.get("start_epoch", 1)) - 1
            f.earlier_seconds = sum(s for k, s in f.epoch_seconds.items() if k <= f.epoch)
            self.changed_folds.add(f.fold)
            self._log(when, f"fold {f.fold} started at epoch {f.epoch + 1}")
        elif kind == "epoch_ended":
            self._epoch_ended(e, when)
        elif kind == "fold_finished":
            f = self.fold(int(e["fold"]))
            f.status = str(e.get("status", "finished"))
            if e.get("best_val_loss") is not None:
                f.best_val_loss, f.best_epoch = e["best_val_loss"], e.get("best_epoch")
            self.changed_folds.add(f.fold)
            self._summarize()
            self._log(when, f"fold {f.fold} {f.status.replace('_', ' ')}")
        elif kind == "run_finished":
            self.status = str(e.get("status", "finished"))
            for f in self.folds.values():
                if f.status == "running":
                    f.status = self.status if self.status == "interrupted" else f.status
                    self.changed_folds.add(f.fold)
            if e.get("cv_mean") is not None:
                self.cv_mean, self.cv_std = e["cv_mean"], e.get("cv_std")
            self._log(when, f"run {self.status}")
        elif kind in ("error", "log"):
            prefix = "ERROR " if kind == "error" else ""
            self._log(when, f"{prefix}{e.get('message', '')}")

    def _epoch_ended(self, e: dict[str, Any], when: float) -> None:
        f = self.fold(int(e["fold"]))
        f.status = "running"
        f.epoch = int(e["epoch"])
        f.epochs = int(e.get("epochs", f.epochs))
        f.train_loss, f.val_loss = e.get("train_loss"), e.get("val_loss")
        if f.best_epoch is not None and f.best_epoch != e.get("best_epoch"):
            self.dirty_cells.add((f.fold, f.best_epoch))
        f.best_val_loss, f.best_epoch = e.get("best_val_loss"), e.get("best_epoch")
        f.val_history[f.epoch] = float(e["val_loss"])
        self.dirty_cells.add((f.fold, f.epoch))
        f.elapsed += float(e.get("seconds", 0.0))
        f.epoch_seconds[f.epoch] = float(e.get("seconds", 0.0))
        f.epochs_timed += 1
        if e.get("gpu_memory_bytes") is not None:
            self.gpu_memory_bytes = int(e["gpu_memory_bytes"])
        self._epoch_times.append(when)
        self.changed_folds.add(f.fold)

    def _summarize(self) -> None:
        done = [
            f.best_val_loss
            for f in self.folds.values()
            if f.status in ("finished", "early_stopped") and f.best_val_loss is not None
        ]
        if done:
            self.cv_mean = statistics.fmean(done)
            self.cv_std = statistics.pstdev(done)

    def _log(self, when: float, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S', time.localtime(when))} {text}")
        self.log_serial += 1

    def mark_process_gone(self) -> None:
        """The run says running but no process holds it: it was killed (resumable). Named
        as `kfold ls` and the runs screen name it, not "interrupted" (a stop you asked for)."""
        self.status = "died"
        for f in self.folds.values():
            if f.status == "running":
                f.status = "died"
                self.changed_folds.add(f.fold)
        self._log(time.time(), "the training process died; r resumes the run")

    @property
    def epochs_per_minute(self) -> float | None:
        times = self._epoch_times
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return 60.0 * (len(times) - 1) / (times[-1] - times[0])

    def take_changed(self) -> set[int]:
        changed, self.changed_folds = self.changed_folds, set()
        return changed

    def take_dirty_cells(self) -> set[tuple[int, int]]:
        dirty, self.dirty_cells = self.dirty_cells, set()
        return dirty


def fmt_loss(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}" if abs(value) < 1e-3 else f"{value:.4f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
