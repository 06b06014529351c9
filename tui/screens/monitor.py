"""Run monitor: fold panes, val-loss table and chart, the run's log; stop and resume."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, Static, TabbedContent, TabPane

from tui import process
from tui.follow import FollowUpdate, RunFollower
from tui.runview import RunView, fmt_loss
from tui.widgets.fold_panel import FoldPanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.loss_table import LossTable

if TYPE_CHECKING:
    from tui.app import KfoldApp


class MonitorScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("t", "tab('table')", "Table"),
        Binding("c", "tab('chart')", "Chart"),
        Binding("l", "tab('log')", "Log"),
        Binding("escape", "back", "Back"),
    ]

    class Followed(Message):
        """New events (all since the last poll, in one batch) and the run's live pid."""

        def __init__(self, update: FollowUpdate) -> None:
            super().__init__()
            self.update = update

    def __init__(self, run_dir: Path, proc: process.EngineProcess | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.proc = proc
        self.view = RunView(self.run_dir, name=self.run_dir.name)
        self.live_pid: int | None = None
        self.polls = 0
        self.error = ""  # why the last process this screen started ended in error
        self._reported: process.EngineProcess | None = None
        self._status_before_resume = ""
        self._log_seen = 0
        self._stop_follow = threading.Event()

    @property
    def kapp(self) -> KfoldApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-head")
        yield Vertical(id="folds")
        with TabbedContent(initial="table", id="tabs"):
            with TabPane("Val loss table", id="table"):
                yield Static("", id="cv-line")
                yield LossTable(id="loss-table")
            with TabPane("Chart", id="chart"):
                yield LossChart(id="loss-chart")
            with TabPane("Log", id="log"):
                yield Log(id="run-log", max_lines=2000)
        # No palette key in the footer: its keys then fit 80 columns (ctrl+p still works).
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.view.load_manifest()
        self.follow()
        self.set_interval(1.0, self.refresh_panels)

    def on_unmount(self) -> None:
        self._stop_follow.set()

    @work(thread=True, exclusive=True, group="follow")
    def follow(self) -> None:
        RunFollower(
            self.run_dir, lambda u: self.post_message(self.Followed(u)), self._stop_follow
        ).run()

    def on_monitor_screen_followed(self, message: Followed) -> None:
        update = message.update
        self.polls += 1
        if self.view.k_folds == 0 or not self.view.folds:
            self.view.load_manifest()
        for event in update.events:
            self.view.apply(event)
        self.live_pid = update.live_pid
        if self.live_pid is None and self.view.status == "running" and self._proc_done():
            self.view.mark_process_gone()
        self.refresh_all()

    def _proc_done(self) -> bool:
        return self.proc is None or self.proc.exit_code() is not None

    def refresh_all(self) -> None:
        self._ensure_panels()
        changed = self.view.take_changed()
        for k in changed or self.view.folds:
            self.query_one(f"#fold-{k}", FoldPanel).show(self.view.folds[k])
        self.query_one(LossTable).sync(self.view, self.view.take_dirty_cells())
        if self.query_one(TabbedContent).active == "chart":
            self.query_one(LossChart).sync(self.view)
        self._refresh_head()
        log = self.query_one("#run-log", Log)
        new = self.view.log_serial - self._log_seen
        if new > 0:
            log.write_lines(list(self.view.log)[-min(new, len(self.view.log)) :])
            self._log_seen = self.view.log_serial

    def refresh_panels(self) -> None:
        """Elapsed and ETA move with the clock, not only with events."""
        for k, f in self.view.folds.items():
            if f.status == "running":
                self.query_one(f"#fold-{k}", FoldPanel).show(f)
        self._report_failure()
        self._refresh_head()

    def _report_failure(self) -> None:
        """Once, when a process this screen started (train or resume) ends in error: the
        reason on the head line and as a notice, and the status back to the run folder's."""
        if self.proc is None or self.proc is self._reported or self.proc.exit_code() is None:
            return
        self._reported = self.proc  # its log is read once, not on every tick after it ends
        message = self.proc.failure()
        if message is None:
            return
        self.error = message
        if self.view.status == "resuming":
            self.view.status = self._status_before_resume  # the run is as it was
        elif not (self.run_dir / "run.json").exists():
            self.view.status = "failed to start"
        self.notify(message, title="kfold stopped with an error", severity="error", timeout=30)

    def _ensure_panels(self) -> None:
        box = self.query_one("#folds", Vertical)
        have = {p.fold for p in box.query(FoldPanel)}
        for k in sorted(self.view.folds):
            if k not in have:
                box.mount(FoldPanel(k))
                self.call_after_refresh(self._show_fold, k)

    def _show_fold(self, k: int) -> None:
        self.query_one(f"#fold-{k}", FoldPanel).show(self.view.folds[k])

    def _refresh_head(self) -> None:
        v = self.view
        error = self.error
        status = v.status
        if self.live_pid is not None:
            status += f" (pid {self.live_pid})"
        elif v.status in ("interrupted", "died", "failed"):
            status += " - r resumes"
        parts = [f"{v.name}", f"{v.model}", f"status {status}", f"device {v.device}"]
        if v.device_name and v.device_name != v.device and v.device_name != "cpu":
            parts[-1] += f" ({v.device_name})"
        if v.gpu_memory_bytes is not None:
            parts.append(f"GPU mem {v.gpu_memory_bytes / 2**20:.0f} MiB")
        if v.epochs_per_minute is not None:
            parts.append(f"{v.epochs_per_minute:.1f} epochs/min")
        text = " | ".join(parts)
        if error:
            text += f"\n✗ {error}"
        self.query_one("#run-head", Static).update(text)
        cv = "CV val loss: waiting for the first fold to finish"
        if v.cv_mean is not None:
            done = sum(1 for f in v.folds.values() if f.status in ("finished", "early_stopped"))
            cv = f"CV val loss {fmt_loss(v.cv_mean)} ± {fmt_loss(v.cv_std)} over {done} fold(s)"
        self.query_one("#cv-line", Static).update(cv)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "chart":
            self.query_one(LossChart).sync(self.view)

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_stop(self) -> None:
        pid = process.request_stop(self.run_dir)
        if pid is None:
            self.notify("No live process holds this run", severity="warning")
        else:
            self.notify(f"Asked process {pid} to stop after this batch")

    def action_resume(self) -> None:
        if self.live_pid is not None or not self._proc_done():
            self.notify("The run is still running", severity="warning")
            return
        if self.view.status in ("finished", "starting", "failed to start"):
            self.notify(f"The run is {self.view.status}; nothing to resume", severity="warning")
            return
        self.proc = process.resume(self.run_dir)
        self.error = ""
        self._status_before_resume = self.view.status
        self.view.status = "resuming"
        self._refresh_head()

    def action_back(self) -> None:
        self.app.pop_screen()
