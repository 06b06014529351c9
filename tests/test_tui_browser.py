"""The checkpoint browser keeps up with the save folder: deletes, runs appearing while it
is open, keys that need a selection, and a footer that fits 80 columns."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_args
from textual.notifications import Notify
from textual.widgets import Tree
from tui_helpers import footer_keys, text_of, wait_for

from engine.cli import main
from tui.app import KfoldApp
from tui.screens.browser import BrowserScreen
from tui.screens.monitor import MonitorScreen


@pytest.fixture
def save(tiny_data: tuple[Path, Path], tmp_path: Path) -> Path:
    """A save folder holding one finished run, r, with best_/last_ files for 2 folds."""
    folder = tmp_path / "save"
    assert main(["train", *tiny_args(*tiny_data, folder, epochs=1)]) == 0
    return folder


def _paths(app: KfoldApp) -> set[Path]:
    tree = app.screen.query_one(Tree)
    found: set[Path] = set()

    def walk(node: Any) -> None:
        found.add(node.data)
        for child in node.children:
            walk(child)

    walk(tree.root)
    return found


def _select(app: KfoldApp, path: Path) -> None:
    tree = app.screen.query_one(Tree)
    nodes = [tree.root]
    while nodes:
        node = nodes.pop()
        if node.data == path:
            tree.move_cursor(node)
            return
        nodes.extend(node.children)
    raise AssertionError(f"{path} not in the tree")


async def _open_browser(pilot: Any, app: KfoldApp) -> BrowserScreen:
    await pilot.press("b")
    await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="the browser")
    browser = app.screen
    assert isinstance(browser, BrowserScreen)
    return browser


def test_deleting_a_file_or_a_run_clears_its_details_and_its_node(save: Path) -> None:
    gone = save / "r" / "last_mlp_fold_2.pth"

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30)) as pilot:
            browser = await _open_browser(pilot, app)
            detail = browser.query_one("#detail")
            _select(app, gone)
            await wait_for(pilot, lambda: "kind" in text_of(detail), what="inspect")
            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
            await pilot.press("y")
            await wait_for(pilot, lambda: not gone.exists(), what="the delete")
            await wait_for(
                pilot, lambda: "kind" not in text_of(detail), timeout=10, what="details cleared"
            )
            assert gone not in _paths(app)
            assert f"Deleted {gone.name}" in text_of(detail)
            # The cursor lands on the run the file was in, so the next key acts on it.
            assert browser.selected() == save / "r"
            assert "status" in text_of(detail)

            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
            await pilot.press("y")
            await wait_for(pilot, lambda: not (save / "r").exists(), what="the run's delete")
            await wait_for(
                pilot, lambda: "status" not in text_of(detail), timeout=10, what="run cleared"
            )
            assert _paths(app) == {save}
            assert browser.selected() == save
            assert "Deleted r" in text_of(detail)

    asyncio.run(scenario())


def test_runs_and_files_appear_and_go_without_f5_and_keep_the_cursor(
    save: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.checkpoint

    inspected: list[Path] = []
    real = engine.checkpoint.inspect_checkpoint

    def counting(path: Path) -> Any:
        inspected.append(Path(path))
        return real(path)

    monkeypatch.setattr(engine.checkpoint, "inspect_checkpoint", counting)
    watched = save / "r" / "best_mlp_fold_1.pth"

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30)) as pilot:
            browser = await _open_browser(pilot, app)
            detail = browser.query_one("#detail")
            _select(app, watched)
            await wait_for(pilot, lambda: "kind" in text_of(detail), what="inspect")
            shutil.copytree(save / "r", save / "r2")
            # Newer than r, so it goes above it: the cursor's line moves, its node must not.
            manifest = json.loads((save / "r2" / "run.json").read_text())
            manifest["created"] = "2999-01-01T00:00:00+0000"
            (save / "r2" / "run.json").write_text(json.dumps(manifest))
            (save / "loose.pth").write_bytes(b"not a checkpoint")
            await wait_for(
                pilot,
                lambda: {save / "r2" / watched.name, save / "loose.pth"} <= _paths(app),
                timeout=10,
                what="the new run and file in the tree",
            )
            assert browser.selected() == watched
            tree = browser.query_one(Tree)
            assert [n.data for n in tree.root.children] == [
                save / "r2",
                save / "r",
                save / "loose.pth",
            ]
            (save / "r2" / watched.name).unlink()
            await wait_for(
                pilot,
                lambda: save / "r2" / watched.name not in _paths(app),
                timeout=10,
                what="the removed file gone from the tree",
            )
            # Polls that find nothing new leave the tree and the details alone.
            await pilot.pause(2.5)
            assert inspected == [watched]
            assert browser.selected() == watched
            assert "kind" in text_of(detail)
            # A rewrite of the selected file (a training writes last_ every epoch) shows anew.
            stamp = watched.stat().st_mtime_ns + 5_000_000_000
            os.utime(watched, ns=(stamp, stamp))
            await wait_for(pilot, lambda: len(inspected) == 2, timeout=10, what="re-inspect")

    asyncio.run(scenario())


def test_keys_that_need_a_selection_say_so_on_the_save_folder_itself(save: Path) -> None:
    notes: list[str] = []

    def hook(message: object) -> None:
        if isinstance(message, Notify):
            notes.append(str(message.notification.message))

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            browser = await _open_browser(pilot, app)
            _select(app, save)
            for key in "eopd":
                notes.clear()
                await pilot.press(key)
                await wait_for(pilot, lambda: bool(notes), timeout=5, what=f"a notice for {key}")
                assert "a run or a checkpoint" in notes[0], (key, notes)
                assert isinstance(app.screen, BrowserScreen)
            assert browser.selected() == save

    asyncio.run(scenario())


def test_footer_shows_back_help_and_quit_at_80_columns(save: Path) -> None:
    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(80, 24)) as pilot:
            await _open_browser(pilot, app)
            await pilot.pause(0.3)
            shown = footer_keys(app)
            for entry in ("e Eval", "d Delete", "esc Back", "? Help", "q Quit"):
                assert entry in shown, shown
            app.pop_screen()
            app.open_monitor(save / "r")  # the other screen with many keys
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
            await pilot.pause(0.3)
            shown = footer_keys(app)
            for entry in ("s Stop", "r Resume", "esc Back", "? Help", "q Quit"):
                assert entry in shown, shown

    asyncio.run(scenario())
