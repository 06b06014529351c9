"""Rich output of the CLI: the live progress bar, the per-fold table, eval and inspect.

Part of the CLI (the only place in engine/ that may use rich). It learns of progress only
through engine events, the same records that go to ``events.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from engine.catalog import INSPECT_FIELDS, RunEntry, file_date


def _fmt(value: Any, digits: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"
    return str(value)


class RichProgress:
    """A bar per fold (epochs) and a line per epoch, seed style: ``Epoch 001 | Val Loss``."""

    def __init__(self) -> None:
        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> RichProgress:
        # The live display starts with the run: an error before it prints alone.
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:  # stopping one never started prints a blank line
            self.progress.stop()

    def on_event(self, e: dict[str, Any]) -> None:
        kind = e["event"]
        if not self.progress.live.is_started:
            self.progress.start()
        if kind == "run_started":
            verb = "resuming" if e["resumed"] else "training"
            self.console.print(
                f"{verb} [bold]{e['run']}[/]: {e['model']} ({e['parameters']:,} parameters), "
                f"{e['folds']} folds x {e['epochs']} epochs on {e['sequences']} sequences, "
                f"device {e['device']}"
            )
        elif kind == "fold_started":
            self.tasks[e["fold"]] = self.progress.add_task(
                f"fold {e['fold']}", total=e["epochs"], completed=e["start_epoch"] - 1, losses=""
            )
        elif kind == "epoch_ended":
            mark = " *" if e["is_best"] else ""
            self.console.print(
                f"fold {e['fold']} | Epoch {e['epoch']:03d} | Train Loss: {e['train_loss']:.4f}"
                f" | Val Loss: {e['val_loss']:.4f}{mark}"
            )
            task = self.tasks.get(e["fold"])
            if task is not None:
                self.progress.update(
                    task,
                    completed=e["epoch"],
                    losses=f"val {e['val_loss']:.4f} best {e['best_val_loss']:.4f}",
                )
        elif kind == "fold_finished":
            task = self.tasks.get(e["fold"])
            if task is not None and e["epochs_done"] is not None:
                self.progress.update(task, total=e["epochs_done"], completed=e["epochs_done"])
        elif kind in ("error", "log"):
            style = "red" if kind == "error" else "dim"
            # Messages quote other software (gloo's "[file.cc:42]"), never our markup.
            self.console.print(f"[{style}]{escape(str(e['message']))}[/]")

    def print_summary(self, manifest: dict[str, Any], status: str) -> None:
        table = Table(title=f"{manifest['name']}: {status}")
        for col in ("fold", "status", "epochs", "best val loss", "best epoch"):
            table.add_column(col, justify="right" if col != "status" else "left")
        for f in manifest["folds"]:
            table.add_row(
                str(f["fold"]),
                f["status"],
                str(f["epochs_done"]),
                _fmt(f["best_val_loss"]),
                _fmt(f["best_epoch"]),
            )
        summary = manifest.get("summary") or {}
        if summary.get("cv_mean") is not None:
            table.caption = (
                f"CV val loss {summary['cv_mean']:.5f} ± {summary['cv_std']:.5f} "
                f"over {summary['folds_finished']} folds"
            )
        self.console.print(table)
        if status == "interrupted":
            run_dir = Path(manifest["config"]["model_save_dir"]) / manifest["name"]
            self.console.print(f"resume with: kfold resume {run_dir}")


def print_eval(result: dict[str, Any]) -> None:
    table = Table(title=f"eval {result['model']} on {result['data']}")
    for col in ("model", "sequences", "loss", "mse", "mae"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in result["folds"]:
        table.add_row(
            row["name"],
            str(row["sequences"]),
            _fmt(row["loss"]),
            _fmt(row["mse"]),
            _fmt(row["mae"]),
        )
    s = result["summary"]
    table.add_section()
    table.add_row(
        "mean ± std",
        "",
        f"{_fmt(s['loss_mean'])} ± {_fmt(s['loss_std'])}",
        f"{_fmt(s['mse_mean'])} ± {_fmt(s['mse_std'])}",
        f"{_fmt(s['mae_mean'])} ± {_fmt(s['mae_std'])}",
    )
    if result.get("ensemble"):
        e = result["ensemble"]
        table.add_row(
            "ensemble", str(e["sequences"]), _fmt(e["loss"]), _fmt(e["mse"]), _fmt(e["mae"])
        )
    if result.get("k_folds"):
        table.caption = f"mean over {len(result['folds'])} of {result['k_folds']} folds"
    console = Console()
    console.print(table)
    for gap in result.get("missing") or []:
        # Not markup (file names, torch's words); soft_wrap keeps one line per fold in a log.
        console.print(f"[yellow]{escape(gap['message'])}[/]", soft_wrap=True)
    if result.get("predictions"):
        console.print(f"predictions written to {result['predictions']}")


def print_inspect(info: dict[str, Any]) -> None:
    console = Console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key in INSPECT_FIELDS:
        if key in info:
            head.add_row(key, _fmt(info[key], 6) if key != "parameter_count" else f"{info[key]:,}")
    if info.get("other_keys"):
        head.add_row("other keys", ", ".join(info["other_keys"]))
    console.print(head)
    if info.get("config"):
        cfg = info["config"]
        console.print("config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    tensors = Table(title="tensors")
    tensors.add_column("name")
    tensors.add_column("shape")
    tensors.add_column("dtype")
    for t in info["tensors"]:
        tensors.add_row(t["name"], "x".join(map(str, t["shape"])) or "scalar", t["dtype"])
    console.print(tensors)


def print_runs(root: Path, runs: list[RunEntry], loose: list[Path]) -> None:
    console = Console()
    table = Table(title=f"runs in {root}")
    for col in ("run", "model", "status", "folds", "CV val loss", "created"):
        # The run name is what `kfold resume` needs typed in full: never cut it.
        table.add_column(col, no_wrap=col == "run", min_width=len(col))
    table.columns[0].overflow = "fold"
    for r in runs:
        cv = (
            "-"
            if r.cv_mean is None
            else f"{r.cv_mean:.5f}"
            + (f" ± {r.cv_std:.5f}" if r.cv_std is not None else " (partial)")
        )
        status = r.status + (" (resumable)" if r.resumable else "")
        table.add_row(
            r.name,
            r.model,
            status,
            f"{r.folds_done}/{r.k_folds}",
            cv,
            r.created[:19].replace("T", " "),
        )
    console.print(table if runs else f"no runs in {root}")
    if loose:
        console.print("loose checkpoints:")
        for p in loose:
            console.print(f"  {p.name}  ({p.stat().st_size:,} bytes, {file_date(p)})")
