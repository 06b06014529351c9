"""Checkpoint browser: runs and their files as a tree, details read safely, and actions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, Tree

from engine.catalog import list_runs, loose_checkpoints, read_run_entry
from engine.run import lock_holder
from tui import process
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import checkpoint_details, run_details
from tui.screens.eval_result import EvalResultScreen
from tui.screens.paths import PathsScreen

if TYPE_CHECKING:
    from textual.widgets.tree import TreeNode

    from tui.app import KfoldApp


class BrowserScreen(Screen[None]):
    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("e", "evaluate", "Eval folds"),
        Binding("o", "evaluate_other", "Eval other data"),
        Binding("p", "predictions", "Export preds"),
        Binding("d", "delete", "Delete"),
        Binding("f5", "reload", "Reload"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    @property
    def kapp(self) -> KfoldApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield Tree(str(self.kapp.save_dir), id="ckpt-tree")
            with VerticalScroll(id="detail-box"):
                yield Static("select a run or a file", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(Tree).focus()

    def action_reload(self) -> None:
        tree: Tree[Path] = self.query_one(Tree)
        tree.clear()
        tree.root.data = self.kapp.save_dir
        tree.root.expand()
        for run in list_runs(self.kapp.save_dir):
            node = tree.root.add(f"{run.name}  [{run.status}]", data=run.path, expand=True)
            for f in sorted(run.path.glob("*.pth")):
                node.add_leaf(f.name, data=f)
        for f in loose_checkpoints(self.kapp.save_dir):
            tree.root.add_leaf(f.name, data=f)

    def selected(self) -> Path | None:
        node = self.query_one(Tree).cursor_node
        return None if node is None else node.data

    def selected_run(self) -> Path | None:
        path = self.selected()
        if path is None:
            return None
        if path.is_dir() and (path / "run.json").exists():
            return path
        if path.is_file() and (path.parent / "run.json").exists():
            return path.parent
        return None

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Path]) -> None:
        self.show_details(event.node)

    def show_details(self, node: TreeNode[Path]) -> None:
        path = node.data
        detail = self.query_one("#detail", Static)
        if path is None:
            return
        if path.is_dir():
            detail.update(run_details(path) if (path / "run.json").exists() else str(path))
        else:
            detail.update(f"reading {path.name} ...")
            self.inspect(path)

    @work(thread=True, exclusive=True, group="inspect")
    def inspect(self, path: Path) -> None:
        # torch is imported here, in a worker, the first time a file is opened.
        from engine.checkpoint import inspect_checkpoint
        from engine.errors import UserError

        try:
            text = checkpoint_details(inspect_checkpoint(path))
        except UserError as exc:
            text = f"✗ {exc}"
        except Exception as exc:  # a browser must survive any file
            text = f"✗ {path}: cannot read it ({type(exc).__name__}: {exc})"
        self.app.call_from_thread(self._show_text, path, text)

    def _show_text(self, path: Path, text: str) -> None:
        if self.selected() == path:
            self.query_one("#detail", Static).update(text)

    def action_resume(self) -> None:
        run = self.selected_run()
        if run is None:
            self.notify("Select a run (or one of its files) to resume", severity="warning")
            return
        entry = read_run_entry(run)
        if entry.live_pid is not None:
            self.kapp.open_monitor(run)
        elif entry.resumable:
            self.kapp.open_monitor(run, process.resume(run))
        else:
            self.notify(f"{entry.name} is {entry.status}; nothing to resume", severity="warning")

    def _eval_target(self) -> Path | None:
        path = self.selected()
        if path is None or path == self.kapp.save_dir:
            self.notify("Select a run or a checkpoint to evaluate", severity="warning")
            return None
        return path

    def action_evaluate(self) -> None:
        target = self._eval_target()
        if target is not None:
            self.evaluate([str(target)])

    def action_evaluate_other(self) -> None:
        target = self._eval_target()
        if target is None:
            return

        def chosen(values: dict[str, str] | None) -> None:
            if values:
                self.evaluate(
                    [
                        str(target),
                        "--input_dir",
                        values["input_dir"],
                        "--label_dir",
                        values["label_dir"],
                    ]
                )

        self.app.push_screen(
            PathsScreen("Evaluate on other data", ["input_dir", "label_dir"], self.kapp.prefill),
            chosen,
        )

    def action_predictions(self) -> None:
        target = self._eval_target()
        if target is None:
            return
        run = self.selected_run()
        where = (run / "predictions" / target.stem) if run else target.parent / "predictions"
        default = {"predictions": str(where)}

        def chosen(values: dict[str, str] | None) -> None:
            if values:
                self.evaluate([str(target), "--predictions", values["predictions"]])

        self.app.push_screen(
            PathsScreen("Export predictions (one CSV per sequence) to", ["predictions"], default),
            chosen,
        )

    @work(thread=True, exclusive=True, group="eval")
    def evaluate(self, args: list[str]) -> None:
        self.app.call_from_thread(self.notify, f"Evaluating {Path(args[0]).name} ...")
        try:
            result: dict[str, Any] | str = process.run_json_eval(args)
        except Exception as exc:
            result = str(exc)
        self.app.call_from_thread(self._show_eval, result)

    def _show_eval(self, result: dict[str, Any] | str) -> None:
        if isinstance(result, str):
            self.notify(f"Evaluation failed: {result}", severity="error", timeout=10)
            self.query_one("#detail", Static).update(f"✗ {result}")
            return
        self.app.push_screen(EvalResultScreen(result))

    def action_delete(self) -> None:
        path = self.selected()
        if path is None or path == self.kapp.save_dir:
            return
        run = path if path.is_dir() else None
        holder = lock_holder(run if run is not None else path.parent)
        if holder is not None:
            self.notify(f"Process {holder} is using this run; stop it first", severity="error")
            return
        what = f"the run {path.name} and all its checkpoints" if run else f"the file {path.name}"

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            late = lock_holder(run if run is not None else path.parent)
            if late is not None:
                self.notify(f"Process {late} started using this run; not deleted", severity="error")
                return
            try:
                shutil.rmtree(path) if run is not None else path.unlink()
            except OSError as exc:
                self.notify(f"Cannot delete {path.name}: {exc.strerror}", severity="error")
                return
            self.notify(f"Deleted {path.name}")
            self.action_reload()

        self.app.push_screen(ConfirmScreen(f"Delete {what}? This cannot be undone."), confirmed)
