"""Val loss against epoch, one line per fold, drawn with the fold's number as its marker
so that it stays readable without colour (NO_COLOR, TERM=xterm)."""

from __future__ import annotations

import itertools
import math

from rich.text import Text
from textual.widget import Widget

from tui.runview import RunView, fmt_loss

FOLD_COLORS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
)
AXIS_WIDTH = 9


def fold_marker(k: int) -> str:
    return str(k) if k < 10 else chr(ord("a") + (k - 10) % 26)


class LossChart(Widget):
    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.series: dict[int, dict[int, float]] = {}

    def sync(self, view: RunView) -> None:
        self.series = {k: dict(f.val_history) for k, f in view.folds.items()}
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        cols, rows = max(width - AXIS_WIDTH, 4), max(height - 1, 2)
        points = [
            (k, e, v) for k, s in self.series.items() for e, v in s.items() if math.isfinite(v)
        ]
        if not points:
            return Text("no epochs yet", style="dim")
        last_epoch = max(e for _, e, _ in points)
        lo, hi = min(v for *_, v in points), max(v for *_, v in points)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        grid: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(rows)]

        def cell(epoch: float, value: float) -> tuple[int, int]:
            x = 0 if last_epoch <= 1 else round((epoch - 1) / (last_epoch - 1) * (cols - 1))
            y = round((hi - value) / (hi - lo) * (rows - 1))
            return x, y

        for k in sorted(self.series):
            style = FOLD_COLORS[(k - 1) % len(FOLD_COLORS)]
            pts = sorted((e, v) for e, v in self.series[k].items() if math.isfinite(v))
            for (e0, v0), (e1, v1) in itertools.pairwise(pts):
                (x0, _), (x1, _) = cell(e0, v0), cell(e1, v1)
                for x in range(x0, x1 + 1):  # join neighbours so a fold reads as a line
                    t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
                    _, y = cell(e0, v0 + t * (v1 - v0))
                    grid[y][x] = ("·", style)
            for e, v in pts:
                x, y = cell(e, v)
                grid[y][x] = (fold_marker(k), style)
        out = Text()
        for r, row in enumerate(grid):
            label = fmt_loss(hi) if r == 0 else fmt_loss(lo) if r == rows - 1 else ""
            out.append(f"{label:>{AXIS_WIDTH - 2}} │", style="dim")
            for ch, style in row:
                out.append(ch, style=style)
            out.append("\n")
        axis = f"epoch 1{'':{max(cols - 8 - len(str(last_epoch)), 1)}}{last_epoch}"
        out.append(" " * AXIS_WIDTH + axis, style="dim")
        return out
