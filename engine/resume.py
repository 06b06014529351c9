"""``kfold resume``: continue a run exactly where it stopped.

The ``last_`` checkpoints are the truth; run.json and metrics.csv are rebuilt from them,
since a kill may land after a checkpoint is written but before those files are.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import checkpoint as ck
from engine.atomic import link_replace, remove_temp_files
from engine.config import RESUMABLE_CHANGES, TrainConfig, config_differences
from engine.data import Dataset
from engine.devices import resolve_device
from engine.errors import ConfigError, DataError, NothingToDo
from engine.fit import FoldProgress
from engine.kfold import (
    RunOutcome,
    fold_entry_update,
    load_last_checkpoint,
    load_training_data,
    load_training_state,
    train_folds,
)
from engine.parallel import wait_for_fold_workers
from engine.run import Listener, RunFolder, RunLock, previous_copy


def resume_run(
    run_dir: Path | str,
    stop: threading.Event,
    listener: Listener | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunOutcome:
    """Continue a run exactly: finished folds are skipped, a partial fold goes on from
    its ``last_`` checkpoint. Only the settings in ``RESUMABLE_CHANGES`` may change."""
    folder = RunFolder(run_dir)
    manifest = folder.read_manifest()
    old = TrainConfig.from_dict(manifest["config"])
    cfg = old.replace(**(overrides or {}))
    changed = [d for d in config_differences(old, cfg) if d.split(":")[0] not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(
            f"cannot resume with changed settings ({'; '.join(changed)}); only --epochs, "
            "--device, --devices and --threads may change: start a new run with `kfold train` "
            "instead"
        )
    if cfg.epochs < old.epochs:
        raise ConfigError(
            f"--epochs {cfg.epochs} is below the run's {old.epochs}; it may only rise"
        )
    resolve_device(cfg.device)
    folds = manifest.get("folds", [])
    if (
        cfg.epochs == old.epochs
        and folds
        and all(f.get("status") in ("finished", "early_stopped") for f in folds)
    ):
        # Nothing is trained or written, not even events: the run stays as it ended.
        raise NothingToDo(
            f"nothing to resume: every fold of {folder.name} is finished; `kfold resume "
            f"{folder.path} --epochs N` (N above {old.epochs}) trains them longer"
        )
    with RunLock(folder.path):
        # A fold worker of a killed --devices parent may still be finishing its batch.
        wait_for_fold_workers(folder.path, len(manifest["folds"]))
        removed = remove_temp_files(folder.path)
        ds = load_training_data(cfg)
        _check_same_data(manifest, ds, cfg)
        notes = _sync_from_checkpoints(folder, manifest, cfg)

        def mark(m: dict[str, Any]) -> None:
            m.update(
                config=cfg.to_dict(),
                status="running",
                pid=os.getpid(),
                host=socket.gethostname(),
                error=None,
                summary=None,
            )
            m["folds"] = manifest["folds"]

        folder.update_manifest(mark)
        return train_folds(
            folder, cfg, ds, stop, listener, resumed=True, removed=len(removed), notes=notes
        )


def _check_same_data(manifest: dict[str, Any], ds: Dataset, cfg: TrainConfig) -> None:
    data = manifest["data"]
    before, now = set(data["stems"]), set(ds.stems)
    if before != now:
        added, gone = sorted(now - before), sorted(before - now)
        parts = []
        if added:
            parts.append(
                f"{len(added)} added ({', '.join(added[:3])}{'...' if len(added) > 3 else ''})"
            )
        if gone:
            parts.append(
                f"{len(gone)} removed ({', '.join(gone[:3])}{'...' if len(gone) > 3 else ''})"
            )
        raise DataError(
            f"the data changed since the run started: {'; '.join(parts)}; restore it or "
            "start a new run"
        )
    if data["fingerprint"] != ds.fingerprint:
        # The run keeps one hash of all the data, not one per file: files written since
        # the run started are where to look.
        newer = _modified_since(cfg, manifest.get("created"))
        where = f"; modified since then: {_some(newer)}" if newer else ""
        raise DataError(
            "the values in the data files changed since the run started (fingerprint "
            f"{data['fingerprint'][:12]} -> {ds.fingerprint[:12]}){where}; restore them or "
            "start a new run"
        )


def _modified_since(cfg: TrainConfig, created: Any) -> list[str]:
    try:
        since = datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return []
    found = []
    for folder in (cfg.input_dir, cfg.label_dir):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            # +1: "created" is cut to the second; a file older than the run can share it.
            found += [e.path for e in entries if e.is_file() and e.stat().st_mtime >= since + 1]
    return sorted(found)


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _sync_from_checkpoints(
    folder: RunFolder, manifest: dict[str, Any], cfg: TrainConfig
) -> list[str]:
    """The ``last_`` checkpoints are the truth: rebuild metrics rows and fold status from
    them, since a kill may have landed after a checkpoint but before these files. Returns
    what the run's log should say about checkpoints recovered or missing."""
    notes = []
    for entry in manifest["folds"]:
        entry.pop("error", None)  # a fold that failed is retried; its old error is history
        state, note = _last_state(folder, cfg, entry)
        if note:
            notes.append(note)
        if state is None:
            folder.replace_fold_metrics(entry["fold"], [])
            entry.update(status="pending", epochs_done=0, best_val_loss=None, best_epoch=None)
            continue
        p = FoldProgress.from_state_dict(state[ck.K_PROGRESS])
        folder.replace_fold_metrics(p.fold, p.history)
        fold_entry_update(entry, p, cfg.epochs, "interrupted")
    return notes


def _last_state(
    folder: RunFolder, cfg: TrainConfig, entry: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """The fold's ``last_`` state; a damaged or missing one is put back from its copy of
    the epoch before (one epoch replayed gives the same run), or refused in one line that
    says what to do. Also what the run's log should say about it."""
    fold = entry["fold"]
    last = folder.checkpoint("last", cfg.model, fold)
    previous = previous_copy(last)
    try:
        state = load_last_checkpoint(folder, cfg, fold)
        if state is not None:
            return state, None
        problem = f"{last.name} is missing"
        if not previous.exists():
            done = entry.get("epochs_done") or 0
            return None, f"fold {fold}: {problem}; it trains again from epoch 1" if done else None
    except ck.CheckpointError as exc:
        # What is wrong, without the generic advice (resume takes no checkpoint to use).
        problem = str(exc).replace(str(last), last.name).split("; ")[0]
        if not previous.exists():
            raise ck.CheckpointError(
                f"{problem} (in {folder.path}); there is no copy of the epoch before "
                f"({previous.name}): move it aside and `kfold resume` trains fold {fold} "
                "again from epoch 1"
            ) from None
    try:
        state = load_training_state(previous, fold)
    except ck.CheckpointError as exc:
        raise ck.CheckpointError(
            f"{problem}, and its copy of the epoch before is unusable too ({exc}); move both "
            f"aside and `kfold resume` trains fold {fold} again from epoch 1"
        ) from None
    if last.exists():  # kept beside the run for a look, out of the way of the next write
        os.replace(last, last.with_name(last.name + ".damaged"))
    link_replace(previous, last)
    return state, (
        f"fold {fold}: {problem}; resumed from its copy of epoch {state[ck.K_EPOCH]} "
        f"({previous.name})"
    )
