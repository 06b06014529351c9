"""Checkpoint browser: runs and their files as a tree, details read safely, and actions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, Tree

from engine.catalog import read_run_entry
from engine.run import RUN_JSON, lock_holder
from tui import process
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import checkpoint_details, run_details
from tui.screens.eval_result import EvalResultScreen
from tui.screens.paths import PathsScreen
from tui.widgets.ckpt_tree import CheckpointTree, Signature, folder_signature, wanted_nodes

if TYPE_CHECKING:
    from textual.widgets.tree import TreeNode

    from tui.app import KfoldApp


ROOT_HINT = "select a run or a checkpoint file"

# What the detail pane shows: a path and the stamp it had (see _stamp).
Shown = tuple[Path, object]


def _stamp(path: Path) -> object:
    """What changes when a node's details would: a file's mtime; a run's run.json mtime and
    whether a live process holds it (a dead one turns "running" into "died")."""
    target = path / RUN_JSON if path.is_dir() else path
    try:
        mtime = os.stat(target).st_mtime_ns
    except OSError:
        mtime = None
    return (mtime, lock_holder(path) is not None) if path.is_dir() else mtime


def _with_note(note: str | None, body: RenderableType) -> RenderableType:
    if note is None:
        return body
    return Group(Text(note, style="bold"), Text(), Text(body) if isinstance(body, str) else body)


class BrowserScreen(Screen[None]):
    # Short descriptions and no command-palette key in this footer, so that everything
    # it lists fits in 80 columns (ctrl+p still works; the help screen lists it and f5).
    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("e", "evaluate", "Eval"),
        Binding("o", "evaluate_other", "Eval other"),
        Binding("p", "predictions", "Export"),
        Binding("d", "delete", "Delete"),
        # The tree follows the save folder on its own, so f5 is rarely needed.
        Binding("f5", "reload", "Reload", show=False),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    POLL_SECONDS = 2.0

    def __init__(self) -> None:
        super().__init__()
        self._signature: Signature | None = None
        self._shown: Shown | None = None

    @property
    def kapp(self) -> KfoldApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield CheckpointTree(self.kapp.save_dir, id="ckpt-tree")
            with VerticalScroll(id="detail-box"):
                yield Static(ROOT_HINT, id="detail")
        yield Footer(show_command_palette=False)

    @property
    def ckpt_tree(self) -> CheckpointTree:
        return self.query_one(CheckpointTree)

    def on_mount(self) -> None:
        self.refresh_tree()
        self.ckpt_tree.focus()
        # Runs started elsewhere (or files removed) show up without f5; a tick that finds
        # the same names and mtimes does nothing more than a few stat calls.
        self.set_interval(self.POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        signature = folder_signature(self.kapp.save_dir)
        if signature != self._signature:
            self.refresh_tree(signature)

    def action_reload(self) -> None:
        self._shown = None  # f5 also reads the selected node's details afresh
        self.refresh_tree()

    def refresh_tree(self, signature: Signature | None = None, note: str | None = None) -> None:
        """Bring the tree in step with the save folder, keeping the cursor where it was
        when that path is still there; when it is gone, on the run (or folder) above it."""
        # The signature is taken before the listing: a change in between is seen next tick.
        self._signature = signature or folder_signature(self.kapp.save_dir)
        gone = self.ckpt_tree.sync(wanted_nodes(self.kapp.save_dir))
        if gone is not None and note is None:
            note = f"{gone.name} is no longer in the save folder"
        node = self.ckpt_tree.cursor_node
        if node is not None:
            self.show_details(node, note)

    def selected(self) -> Path | None:
        node = self.ckpt_tree.cursor_node
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
        # A refresh may have moved the cursor (or removed the node) since this was sent.
        if event.node is self.ckpt_tree.cursor_node:
            self.show_details(event.node)

    def show_details(self, node: TreeNode[Path], note: str | None = None) -> None:
        """Show a node's details, unless they are on screen already and unchanged: a
        refresh must not re-read (for a file: re-load with torch) what has not changed."""
        path = node.data
        detail = self.query_one("#detail", Static)
        if path is None:
            return
        shown = (path, _stamp(path))
        if note is None and shown == self._shown:
            return
        self._shown = shown
        if path == self.kapp.save_dir:
            detail.update(_with_note(note, f"{path}\n\n{ROOT_HINT}"))
        elif path.is_dir():
            body = run_details(path) if (path / RUN_JSON).exists() else str(path)
            detail.update(_with_note(note, body))
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

    def _target(self, doing: str) -> Path | None:
        path = self.selected()
        if path is None or path == self.kapp.save_dir:
            # The save folder itself is no target; say so rather than ignore the key.
            self.notify(
                f"To {doing}, select a run or a checkpoint in the tree first", severity="warning"
            )
            return None
        return path

    def action_evaluate(self) -> None:
        target = self._target("evaluate")
        if target is not None:
            self.evaluate([str(target)])

    def action_evaluate_other(self) -> None:
        target = self._target("evaluate on other data")
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
        target = self._target("export predictions")
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
            self._shown = None  # moving back onto the node shows its details again
            return
        self.app.push_screen(EvalResultScreen(result))

    def action_delete(self) -> None:
        path = self._target("delete")
        if path is None:
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
            # The cursor moves off the deleted node onto its run (or the save folder), and
            # the detail pane says what went instead of showing the deleted file.
            self.refresh_tree(note=f"Deleted {path.name}")

        self.app.push_screen(ConfirmScreen(f"Delete {what}? This cannot be undone."), confirmed)
