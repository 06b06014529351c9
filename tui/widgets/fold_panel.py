"""One fold's pane: status, epoch n/N bar, current and best losses, elapsed and ETA."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.runview import FoldView, fmt_duration, fmt_loss

STATUS_STYLE = {
    "pending": "dim",
    "running": "bold cyan",
    "finished": "bold green",
    "early_stopped": "green",
    "interrupted": "bold yellow",
    "died": "bold red",
    "failed": "bold red",
}


def progress_bar(done: int, total: int, width: int) -> str:
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "█" * filled + "░" * (width - filled)


class FoldPanel(Static):
    DEFAULT_CSS = """
    FoldPanel { height: 2; padding: 0 1; }
    """

    def __init__(self, fold: int) -> None:
        super().__init__(id=f"fold-{fold}", classes="fold-panel")
        self.fold = fold

    def show(self, f: FoldView) -> None:
        status = f.status.replace("_", " ")
        head = Text()
        head.append(f"fold {f.fold} ", style="bold")
        head.append(f"{status:<13}", style=STATUS_STYLE.get(f.status, ""))
        head.append(f" {progress_bar(f.epoch, f.epochs, 24)} ")
        head.append(f"epoch {f.epoch}/{f.epochs}")
        best = fmt_loss(f.best_val_loss)
        if f.best_epoch:
            best += f" @{f.best_epoch}"
        line2 = (
            f"  train {fmt_loss(f.train_loss)}  val {fmt_loss(f.val_loss)}  best {best}"
            f"  elapsed {fmt_duration(f.elapsed_seconds)}  eta {fmt_duration(f.eta_seconds)}"
        )
        head.append("\n" + line2)
        self.update(head)
