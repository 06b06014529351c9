"""First screen: the runs in the save folder, sortable, with attach and resume."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.catalog import RunEntry, list_runs
from tui import process
from tui.runview import fmt_loss

if TYPE_CHECKING:
    from tui.app import KfoldApp

SORTS = ("created", "cv", "model", "status", "name")
COLUMNS = ("run", "model", "status", "folds", "CV val loss", "hidden", "layers", "lr", "created")


def _status_text(r: RunEntry) -> str:
    if r.live_pid is not None:
        return f"{r.status} (live)"
    return r.status + (" (resumable)" if r.resumable else "")


def _setting(r: RunEntry, key: str) -> str:
    value = r.settings.get(key)
    return "" if value is None else str(value)


def _sort_key(name: str) -> Any:
    keys = {
        "created": lambda r: r.created,
        "cv": lambda r: (r.cv_mean is None, r.cv_mean or 0.0),
        "model": lambda r: (r.model, r.created),
        "status": lambda r: (r.status, r.created),
        "name": lambda r: r.name,
    }
    return keys[name]


class RunsScreen(Screen[None]):
    BINDINGS = [
        Binding("n", "app.new_run", "New run"),
        Binding("enter", "open", "Monitor", show=True),
        Binding("r", "resume", "Resume"),
        Binding("s", "sort", "Sort"),
        Binding("b", "app.browse", "Checkpoints"),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_by = "created"
        self.runs: list[RunEntry] = []

    @property
    def kapp(self) -> KfoldApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def has_runs(self) -> bool:
        return bool(list_runs(self.kapp.save_dir))

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        self.action_refresh()
        self.set_interval(2.0, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_runs(self.kapp.save_dir)

    @work(thread=True, exclusive=True, group="runs")
    def load_runs(self, save_dir: Path) -> None:
        # Reading every run.json (and probing its lock) can be slow on network disks.
        runs = list_runs(save_dir)
        self.app.call_from_thread(self.show_runs, runs)

    def show_runs(self, runs: list[RunEntry]) -> None:
        self.runs = sorted(runs, key=_sort_key(self.sort_by), reverse=self.sort_by == "created")
        table = self.query_one("#runs", DataTable)
        selected = self.selected()
        table.clear()
        for r in self.runs:
            cv = "-" if r.cv_mean is None else fmt_loss(r.cv_mean)
            if r.cv_std is not None:
                cv += f" ± {fmt_loss(r.cv_std)}"
            table.add_row(
                r.name,
                r.model,
                _status_text(r),
                f"{r.folds_done}/{r.k_folds}",
                cv,
                _setting(r, "hidden_size"),
                _setting(r, "num_layers"),
                _setting(r, "lr"),
                r.created[:16].replace("T", " "),
                key=r.name,
            )
        if selected is not None and selected.name in table.rows:
            table.move_cursor(row=table.get_row_index(selected.name))
        title = f"{len(self.runs)} run(s) in {self.kapp.save_dir}, sorted by {self.sort_by}"
        if not self.runs:
            title += " - press n to start one"
        self.query_one("#runs-title", Static).update(title)

    def selected(self) -> RunEntry | None:
        table = self.query_one("#runs", DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((r for r in self.runs if r.name == key), None)

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self.show_runs(self.runs)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        run = self.selected()
        if run is not None:
            self.kapp.open_monitor(run.path)

    def action_resume(self) -> None:
        run = self.selected()
        if run is None:
            return
        if run.live_pid is not None:
            self.notify(
                f"{run.name} is running (pid {run.live_pid}); opening it", severity="warning"
            )
        elif not run.resumable:
            self.notify(f"{run.name} is {run.status}; nothing to resume", severity="warning")
            return
        else:
            self.kapp.open_monitor(run.path, process.resume(run.path))
            return
        self.kapp.open_monitor(run.path)
