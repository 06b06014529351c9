"""Text for the browser's detail pane: a run from its run.json, a file from inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from engine.catalog import INSPECT_FIELDS, read_run_entry
from engine.errors import RunError
from engine.run import RunFolder
from tui.runview import fmt_loss


def run_details(path: Path) -> Table | str:
    try:
        return _run_grid(path, RunFolder(path).read_manifest())
    except RunError as exc:
        return f"✗ {exc}"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited run.json
        return f"✗ {path / 'run.json'}: damaged ({type(exc).__name__}: {exc})"


def _run_grid(path: Path, m: dict[str, Any]) -> Table:
    entry = read_run_entry(path)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    summary = m.get("summary") or {}
    grid.add_row("run", m["name"])
    grid.add_row("status", entry.status + (" (resumable)" if entry.resumable else ""))
    grid.add_row("created", m.get("created", ""))
    grid.add_row(
        "data",
        f"{m['data']['sequences']} sequences, "
        f"{m['data']['n_features']} in / {m['data']['n_targets']} out",
    )
    if summary.get("cv_mean") is not None:
        grid.add_row(
            "CV val loss", f"{fmt_loss(summary['cv_mean'])} ± {fmt_loss(summary['cv_std'])}"
        )
    for f in m["folds"]:
        grid.add_row(
            f"fold {f['fold']}",
            f"{f['status']}, {f['epochs_done']} epochs, best "
            f"{fmt_loss(f['best_val_loss'])} @ {f['best_epoch'] or '-'}",
        )
    if m.get("error"):
        grid.add_row("error", Text(str(m["error"]), style="red"))
    cfg = m.get("config", {})
    grid.add_row("config", ", ".join(f"{k}={v}" for k, v in cfg.items()))
    return grid


def checkpoint_details(info: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key in INSPECT_FIELDS:
        value = info.get(key)
        if value is None:
            continue
        if key in ("val_loss", "best_val_loss"):
            value = fmt_loss(value)
        elif key in ("parameter_count", "size_bytes"):
            value = f"{value:,}"
        grid.add_row(key.replace("_", " "), str(value))
    if info.get("other_keys"):
        grid.add_row("other keys", ", ".join(info["other_keys"]))
    if info.get("config"):
        grid.add_row("config", ", ".join(f"{k}={v}" for k, v in info["config"].items()))
    shapes = "\n".join(
        f"{t['name']}  {'x'.join(map(str, t['shape'])) or 'scalar'}  {t['dtype']}"
        for t in info["tensors"][:200]
    )
    if len(info["tensors"]) > 200:
        shapes += f"\n... {len(info['tensors']) - 200} more"
    grid.add_row("tensors", shapes)
    return grid
