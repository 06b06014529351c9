"""All folds of a run: start them, train them in turn, and keep run.json up to date."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine import checkpoint as ck
from engine.atomic import describe_os_error
from engine.batches import SequenceSet
from engine.config import TrainConfig
from engine.data import Dataset, load_dataset
from engine.devices import device_name, resolve_device
from engine.errors import DataError, RunError
from engine.fit import FoldFailed, FoldProgress, FoldTrainer, Interrupted, restore_rng
from engine.folds import assign_folds, derive_seed
from engine.models import build_model, parameter_count
from engine.run import (
    RUN_FORMAT_VERSION,
    EventLog,
    Listener,
    RunFolder,
    RunLock,
    ensure_writable,
    now_iso,
    only_lock_files,
)
from engine.threads import resolve_threads, torch_threads


@dataclass(frozen=True)
class RunOutcome:
    folder: Path
    status: str  # finished | interrupted | failed
    manifest: dict[str, Any]


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_training_data(cfg: TrainConfig) -> Dataset:
    ds = load_dataset(cfg.input_dir, cfg.label_dir)
    if len(ds.stems) < cfg.k_folds:
        raise DataError(
            f"{cfg.input_dir}: {len(ds.stems)} sequences are fewer than --k_folds "
            f"{cfg.k_folds}; add data or lower --k_folds"
        )
    return ds


def data_meta(ds: Dataset) -> dict[str, Any]:
    return {
        "n_features": ds.n_features,
        "n_targets": ds.n_targets,
        "input_columns": list(ds.input_columns),
        "label_columns": list(ds.label_columns),
    }


def start_run(
    cfg: TrainConfig, stop: threading.Event, listener: Listener | None = None
) -> RunOutcome:
    """Validate everything, then create the run folder and train every fold."""
    cfg = cfg.with_absolute_paths()
    resolve_device(cfg.device)
    ds = load_training_data(cfg)
    name = cfg.run or default_run_name(cfg)
    cfg = cfg.replace(run=name)
    save_dir = Path(cfg.model_save_dir)
    folder = RunFolder(save_dir / name)
    if folder.run_json.exists():
        raise RunError(
            f"{folder.path}: a run of this name exists; resume it with `kfold resume "
            f"{folder.path}` or choose another --run"
        )
    if folder.path.exists() and not only_lock_files(folder.path):
        raise RunError(f"{folder.path}: exists and is not a run folder; choose another --run")
    ensure_writable(save_dir)
    folds = assign_folds(ds.stems, cfg.k_folds, cfg.seed)
    manifest = {
        "format_version": RUN_FORMAT_VERSION,
        "name": name,
        "created": now_iso(),
        "updated": now_iso(),
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "config": cfg.to_dict(),
        "data": {
            "sequences": len(ds.stems),
            "stems": list(ds.stems),
            "fingerprint": ds.fingerprint,
            **data_meta(ds),
        },
        "folds": [
            {
                "fold": i + 1,
                "val_stems": val,
                "status": "pending",
                "epochs_done": 0,
                "best_val_loss": None,
                "best_epoch": None,
            }
            for i, val in enumerate(folds)
        ],
        "summary": None,
        "error": None,
    }
    # A folder without run.json is a train killed at its first instant: it is taken over.
    folder.path.mkdir(parents=True, exist_ok=True)
    with RunLock(folder.path):
        folder.write_manifest(manifest)
        return train_folds(folder, cfg, ds, stop, listener, resumed=False)


def load_last_checkpoint(folder: RunFolder, cfg: TrainConfig, fold: int) -> dict[str, Any] | None:
    path = folder.checkpoint("last", cfg.model, fold)
    return load_training_state(path, fold) if path.exists() else None


def load_training_state(path: Path, fold: int) -> dict[str, Any]:
    """A ``last_`` checkpoint (or its previous copy) of this fold, with all a resume needs."""
    state = ck.require_training_checkpoint(ck.load_checkpoint(path), path)
    missing = [k for k in (ck.K_OPTIMIZER, ck.K_RNG, ck.K_PROGRESS) if k not in state]
    if missing or state.get(ck.K_FOLD) != fold:
        raise ck.CheckpointError(
            f"{path}: not this run's last_ checkpoint of fold {fold} (it lacks "
            f"{', '.join(missing) or 'the right fold'}); delete it to retrain fold {fold} "
            "from scratch"
        )
    return state


def fold_entry_update(entry: dict[str, Any], p: FoldProgress, epochs: int, status: str) -> None:
    if p.is_complete(epochs):
        status = "early_stopped" if p.early_stopped else "finished"
    entry.update(
        status=status,
        epochs_done=p.epoch,
        best_val_loss=p.best_val_loss if math.isfinite(p.best_val_loss) else None,
        best_epoch=p.best_epoch or None,
    )


def train_folds(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    stop: threading.Event,
    listener: Listener | None,
    *,
    resumed: bool,
    removed: int = 0,
    notes: Sequence[str] = (),
) -> RunOutcome:
    with torch_threads(resolve_threads(cfg.threads)) as threads:
        return _train_folds(folder, cfg, ds, stop, listener, resumed, removed, notes, threads)


def _train_folds(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    stop: threading.Event,
    listener: Listener | None,
    resumed: bool,
    removed: int,
    notes: Sequence[str],
    threads: int,
) -> RunOutcome:
    device = resolve_device(cfg.device)
    manifest = folder.read_manifest()
    events = EventLog(folder.events_jsonl, folder.name, listener)
    probe = build_model(cfg, ds.n_features, ds.n_targets)
    events.emit(
        "run_started",
        pid=os.getpid(),
        host=socket.gethostname(),
        resumed=resumed,
        device=str(device),
        device_name=device_name(device),
        folds=cfg.k_folds,
        epochs=cfg.epochs,
        model=cfg.model,
        sequences=len(ds.stems),
        parameters=parameter_count(probe),
        threads=threads,
    )
    if removed:
        events.emit("log", message=f"removed {removed} temporary file(s) left by a killed process")
    for note in notes:
        events.emit("log", message=note)
    status = "finished"
    try:
        status = _fold_runner(cfg)(folder, cfg, ds, manifest["folds"], device, events, stop)
    except Interrupted:
        status = "interrupted"
    except BaseException as exc:
        if isinstance(exc, OSError):
            message = describe_os_error(exc)
        else:
            message = f"{type(exc).__name__}: {exc}".strip()
        # The disk may refuse these writes too; the error still reaches the user via the CLI.
        with contextlib.suppress(OSError):
            folder.update_manifest(lambda m: m.update(status="failed", error=message))
        events.emit("error", message=message, fold=None)
        events.emit(
            "run_finished",
            status="failed",
            cv_mean=None,
            cv_std=None,
            folds_finished=None,
            folds_failed=None,
        )
        events.close()
        raise
    final = folder.update_manifest(lambda m: _finish(m, status))
    summary = final["summary"] or {}
    events.emit(
        "run_finished",
        status=status,
        cv_mean=summary.get("cv_mean"),
        cv_std=summary.get("cv_std"),
        folds_finished=summary.get("folds_finished"),
        folds_failed=summary.get("folds_failed"),
    )
    events.close()
    return RunOutcome(folder.path, status, final)


# (folder, cfg, ds, fold entries, device, events, stop) -> "finished" | "failed"
FoldRunner = Callable[..., str]


def train_entries(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    entries: list[dict[str, Any]],
    device: torch.device,
    events: EventLog,
    stop: threading.Event,
    trainer_cls: type[FoldTrainer] = FoldTrainer,
) -> str:
    """Train ``entries`` one after another: "failed" if one failed, else "finished"."""
    status = "finished"
    for entry in entries:
        fold = entry["fold"]
        try:
            p = _run_fold(folder, cfg, ds, entry, device, events, stop, trainer_cls)
        except FoldFailed as exc:
            status = "failed"
            _set_fold(folder, fold, status="failed", error=str(exc))
            events.emit("error", message=str(exc), fold=fold)
            events.emit(
                "fold_finished",
                fold=fold,
                status="failed",
                best_val_loss=None,
                best_epoch=None,
                epochs_done=None,
            )
            continue
        if p is None:
            continue
        done = "early_stopped" if p.early_stopped else "finished"
        _set_fold(folder, fold, progress=p, epochs=cfg.epochs, status=done)
        events.emit(
            "fold_finished",
            fold=fold,
            status=done,
            best_val_loss=p.best_val_loss,
            best_epoch=p.best_epoch,
            epochs_done=p.epoch,
        )
    return status


def _fold_runner(cfg: TrainConfig) -> FoldRunner:
    """Sequential in this process, side by side on ``--devices``, or shared out over the
    ranks of a torchrun job; every runner leaves the run-level bookkeeping to the caller."""
    from engine import distributed

    if cfg.devices:
        from engine.parallel import train_on_devices

        return train_on_devices
    if distributed.world_size() > 1:
        return distributed.train_on_ranks
    return train_entries


def _run_fold(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    entry: dict[str, Any],
    device: torch.device,
    events: EventLog,
    stop: threading.Event,
    trainer_cls: type[FoldTrainer] = FoldTrainer,
) -> FoldProgress | None:
    fold = entry["fold"]
    if entry["status"] in ("finished", "early_stopped"):
        return None
    val_stems = set(entry["val_stems"])
    train_idx = [i for i, s in enumerate(ds.stems) if s not in val_stems]
    val_idx = [i for i, s in enumerate(ds.stems) if s in val_stems]
    train_set = SequenceSet(
        [ds.inputs[i] for i in train_idx], [ds.labels[i] for i in train_idx], cfg.max_seq_len
    )
    val_set = SequenceSet(
        [ds.inputs[i] for i in val_idx], [ds.labels[i] for i in val_idx], cfg.max_seq_len
    )
    # Each fold seeds its own streams, so its result does not depend on the folds before it.
    torch.manual_seed(derive_seed(cfg.seed, "init", fold))
    model = build_model(cfg, ds.n_features, ds.n_targets).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "shuffle", fold))
    progress = FoldProgress(fold=fold)
    state = load_last_checkpoint(folder, cfg, fold)
    if state is not None:
        ck.restore_states(folder.checkpoint("last", cfg.model, fold), state, model, optimizer)
        restore_rng(state[ck.K_RNG], generator)
        progress = FoldProgress.from_state_dict(state[ck.K_PROGRESS])
    if progress.is_complete(cfg.epochs):
        return progress
    _set_fold(folder, fold, status="running")
    events.emit(
        "fold_started",
        fold=fold,
        epochs=cfg.epochs,
        start_epoch=progress.epoch + 1,
        train_size=len(train_set),
        val_size=len(val_set),
    )
    trainer = trainer_cls(
        cfg,
        model,
        optimizer,
        generator,
        train_set,
        val_set,
        device,
        progress,
        folder,
        events,
        stop,
        data_meta(ds),
    )
    try:
        progress = trainer.run()
    except Interrupted:
        _set_fold(folder, fold, progress=progress, epochs=cfg.epochs, status="interrupted")
        raise
    if progress.is_complete(cfg.epochs):  # the previous copy only serves a resume mid-fold
        folder.drop_previous_copy(cfg.model, fold)
    return progress


def _set_fold(
    folder: RunFolder,
    fold: int,
    *,
    status: str,
    progress: FoldProgress | None = None,
    epochs: int = 0,
    error: str | None = None,
) -> None:
    def change(m: dict[str, Any]) -> None:
        entry = m["folds"][fold - 1]
        if progress is not None:
            fold_entry_update(entry, progress, epochs, status)
        else:
            entry["status"] = status
        if error is not None:
            entry["error"] = error

    folder.update_manifest(change)


def _finish(manifest: dict[str, Any], status: str) -> None:
    folds = manifest["folds"]
    done = [f for f in folds if f["status"] in ("finished", "early_stopped")]
    failed = [f["fold"] for f in folds if f["status"] == "failed"]
    losses = [f["best_val_loss"] for f in done if f["best_val_loss"] is not None]
    manifest["status"] = status
    manifest["summary"] = {
        "folds_finished": len(done),
        "folds_failed": failed,
        "cv_mean": statistics.fmean(losses) if losses else None,
        # Population std over the folds' best val loss (numpy's default, ddof=0).
        "cv_std": statistics.pstdev(losses) if losses else None,
    }
    manifest["pid"] = None
