"""The kfold terminal app: runs overview, train form, run monitor, checkpoint browser.

Start-up imports neither torch nor pandas: the first screen only reads run.json files.
Heavy work (loading data, inspecting checkpoints, evaluating) runs in worker threads or
in engine child processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from engine.config import TrainConfig
from tui.screens.browser import BrowserScreen
from tui.screens.help import HelpScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import RunsScreen
from tui.screens.train_form import TrainFormScreen


class KfoldApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "kfold"
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, prefill: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.prefill = {k: v for k, v in (prefill or {}).items() if v is not None}
        self.save_dir = Path(self.prefill.get("model_save_dir", TrainConfig().model_save_dir))

    def on_mount(self) -> None:
        self.sub_title = str(self.save_dir)
        runs = RunsScreen()
        self.push_screen(runs)
        if not runs.has_runs():
            self.push_screen(TrainFormScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_run(self) -> None:
        self.push_screen(TrainFormScreen())

    def action_browse(self) -> None:
        self.push_screen(BrowserScreen())

    def action_runs(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()

    def open_monitor(self, run_dir: Path, process: Any = None) -> None:
        self.push_screen(MonitorScreen(run_dir, process))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New run", "Open the train form", self.action_new_run)
        yield SystemCommand("Runs", "The runs in the save folder", self.action_runs)
        yield SystemCommand("Browse checkpoints", "Inspect, evaluate, delete", self.action_browse)
        yield SystemCommand("Keys", "Every key of every screen", self.action_help)


def run_app(prefill: dict[str, Any]) -> int:
    return KfoldApp(prefill).run() or 0
