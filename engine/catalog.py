"""What a save folder holds: runs (read from run.json, never from checkpoints) and loose
``.pth`` files. Shared by ``kfold ls`` and the app's overview, and the lookup that lets
``kfold resume|eval|inspect`` take the names ``kfold ls`` prints."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import TrainConfig
from engine.errors import RunError
from engine.run import RUN_JSON, RunFolder, lock_holder

# The headline fields of `kfold inspect`, in the order the CLI and the app show them
# (here, not in checkpoint.py, so the app can name them without importing torch).
INSPECT_FIELDS = (
    "kind",
    "model",
    "fold",
    "epoch",
    "val_loss",
    "best_val_loss",
    "best_epoch",
    "parameter_count",
    "tensor_count",
    "size_bytes",
    "modified",
    "path",
)


@dataclass(frozen=True)
class RunEntry:
    path: Path
    name: str
    model: str
    status: str  # as in run.json, but a "running" run whose process died reads "died"
    folds_done: int
    k_folds: int
    epochs: int
    cv_mean: float | None
    cv_std: float | None
    created: str
    live_pid: int | None
    settings: dict[str, Any]
    error: str | None = None

    @property
    def resumable(self) -> bool:
        return self.status in ("interrupted", "died", "failed")


def read_run_entry(path: Path) -> RunEntry:
    try:
        return _entry(path, RunFolder(path).read_manifest())
    except RunError as exc:
        error = str(exc)
    except (TypeError, ValueError, AttributeError) as exc:  # hand-edited values
        error = f"{path / RUN_JSON}: damaged ({exc})"
    return RunEntry(
        path, path.name, "?", "unreadable", 0, 0, 0, None, None, "", None, {}, error=error
    )


def _entry(path: Path, m: dict[str, Any]) -> RunEntry:
    cfg = m.get("config", {})
    folds = m.get("folds", [])
    done = sum(1 for f in folds if f.get("status") in ("finished", "early_stopped"))
    summary = m.get("summary") or {}
    losses = [
        f["best_val_loss"]
        for f in folds
        if f.get("best_val_loss") is not None and f.get("status") in ("finished", "early_stopped")
    ]
    cv_mean = summary.get("cv_mean")
    if cv_mean is None and losses:
        cv_mean = sum(losses) / len(losses)
    live = lock_holder(path)
    status = m.get("status", "?")
    if status == "running" and live is None:
        status = "died"
    keys = ("hidden_size", "num_layers", "nhead", "batch_size", "lr", "epochs", "seed")
    return RunEntry(
        path=path,
        name=path.name,  # the folder is what `kfold resume` takes
        model=cfg.get("model", "?"),
        status=status,
        folds_done=done,
        k_folds=len(folds),
        epochs=int(cfg.get("epochs", 0)),
        cv_mean=cv_mean,
        cv_std=summary.get("cv_std"),
        created=m.get("created", ""),
        live_pid=live,
        settings={k: cfg.get(k) for k in keys},
        error=m.get("error"),
    )


def list_runs(save_dir: Path | str) -> list[RunEntry]:
    root = Path(save_dir)
    if not root.is_dir():
        return []
    runs = [read_run_entry(p) for p in sorted(root.iterdir()) if (p / RUN_JSON).is_file()]
    return sorted(runs, key=lambda r: r.created, reverse=True)


def loose_checkpoints(save_dir: Path | str) -> list[Path]:
    root = Path(save_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*.pth") if p.is_file())


def file_date(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))


def find_in_save_dir(given: str, save_dir: Path | str, what: str = "run folder") -> Path:
    """``given`` as typed if it exists, else ``<save_dir>/<given>``: `kfold ls` prints run
    names, and a name should work wherever a run folder (or a loose checkpoint) is taken.

    A path that exists wins, so a name never shadows what the user pointed at. Neither
    existing is a RunError naming both places looked in."""
    typed = Path(given).expanduser()
    if typed.exists():
        return typed
    inside = Path(save_dir).expanduser() / typed
    if inside.exists():
        return inside
    places = str(typed) if inside == typed else f"{typed} and {inside}"
    default = Path(TrainConfig().model_save_dir)
    lister = "kfold ls" if Path(save_dir) == default else f"kfold ls {save_dir}"
    listed = "the runs" if what == "run folder" else "the runs and loose checkpoints"
    raise RunError(f"{given}: no such {what} (looked for {places}); `{lister}` lists {listed}")
