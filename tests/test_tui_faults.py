"""The app under terminal faults: tiny and resized screens, no colour, the training
process killed under it, the app itself killed while a run goes on, and a run missing a
fold's checkpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from conftest import ENV, ROOT, tiny_args
from killrun import assert_same_run, events
from test_terminal import Tmux
from test_tui import _select_path
from textual.widgets import DataTable
from tui_helpers import SLOW_WRITES, prefill, start_from_form, text_of, wait_for

from engine.cli import build_parser, main
from engine.config import config_from_args
from engine.kfold import start_run
from engine.run import lock_holder
from tui.app import KfoldApp
from tui.screens.browser import BrowserScreen
from tui.screens.eval_result import EvalResultScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.fold_panel import FoldPanel


def test_training_killed_under_the_app_shows_died_and_resumes(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SLOW_WRITES.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "save" / "r"

    async def scenario() -> None:
        app = KfoldApp(prefill(tiny_data, tmp_path / "save", epochs=6, model="lstm"))
        async with app.run_test(size=(60, 20)) as pilot:  # small, and resized below
            monitor = await start_from_form(pilot, app)
            await wait_for(
                pilot,
                lambda: 1 in monitor.view.folds and monitor.view.folds[1].epoch >= 1,
                what="first epoch",
            )
            await pilot.resize_terminal(120, 40)
            await pilot.resize_terminal(60, 20)
            pid = lock_holder(run_dir)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_for(
                pilot,
                lambda: monitor.view.status == "died",
                what="died after the kill",
            )
            # A fold that was running reads "died"; none may still claim to be running
            # (the kill can also land between two folds).
            panels = [text_of(p) for p in monitor.query(FoldPanel)]
            assert not any(" running " in p for p in panels), panels
            assert "r resumes" in text_of(monitor.query_one("#run-head"))
            await pilot.press("r")
            await wait_for(pilot, lambda: monitor.view.status == "finished", what="finished")

    asyncio.run(scenario())
    monkeypatch.delenv("KFOLD_TEST_WRITE_DELAY")
    assert main(["train", *tiny_args(*tiny_data, tmp_path / "ref", model="lstm", epochs=6)]) == 0
    assert_same_run(tmp_path / "ref" / "r", run_dir, "lstm", folds=2)


def test_the_app_killed_mid_run_leaves_the_run_going_and_a_new_app_attaches(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "save"
    flags = " ".join(tiny_args(*tiny_data, save, epochs=30, model="lstm"))
    env = {**ENV, "KFOLD_CACHE_DIR": os.environ["KFOLD_CACHE_DIR"], **SLOW_WRITES}
    app_cmd = f"env NO_COLOR=1 TERM=xterm {sys.executable} -m engine {flags}"
    first = Tmux(app_cmd, ROOT, env)
    try:
        first.wait_for("Ready: ctrl+s starts the run", timeout=60)
        first.keys("C-s")
        screen = first.wait_for("fold 1 running")
        assert "status running (pid" in screen
    finally:
        first.close()  # the terminal and the app die; the run is in its own session
    run_dir = save / "r"
    pid = lock_holder(run_dir)
    assert pid is not None, "the run died with the app"
    before = len(events(run_dir))
    second = Tmux(
        f"env NO_COLOR=1 TERM=xterm {sys.executable} -m engine --model_save_dir {save}", ROOT, env
    )
    try:
        runs = second.wait_for("1 run(s) in")
        assert "running (live)" in runs
        second.keys("Enter")
        screen = second.wait_for("status finished", timeout=180)
        assert "fold 2 finished" in screen and "epoch 30/30" in screen
    finally:
        second.close()
    assert len(events(run_dir)) > before


def test_a_resume_that_fails_says_why_on_the_monitor(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "save"
    stop = threading.Event()
    args = build_parser().parse_args(["train", *tiny_args(*tiny_data, save, epochs=4)])
    outcome = start_run(
        config_from_args(args), stop, lambda e: stop.set() if e["event"] == "epoch_ended" else None
    )
    assert outcome.status == "interrupted"
    first = sorted(tiny_data[0].iterdir())[0]
    lines = first.read_text().splitlines()
    lines[1] = "7.5," + lines[1].split(",", 1)[1]  # one value changed: resume must refuse
    first.write_text("\n".join(lines) + "\n")

    async def scenario() -> None:
        app = KfoldApp(prefill(tiny_data, save))
        async with app.run_test(size=(120, 40)) as pilot:
            app.open_monitor(save / "r")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
            monitor = app.screen
            assert isinstance(monitor, MonitorScreen)
            await wait_for(pilot, lambda: monitor.view.status == "interrupted")
            await pilot.press("r")
            await wait_for(pilot, lambda: monitor.error != "", what="the refusal")
            assert "changed since the run started" in monitor.error
            await wait_for(pilot, lambda: monitor.view.status == "interrupted")
            head = text_of(monitor.query_one("#run-head"))
            assert "status interrupted - r resumes" in head
            assert f"✗ {monitor.error}" in head

    asyncio.run(scenario())


def test_eval_of_a_run_missing_a_fold_checkpoint_says_so_on_its_result_screen(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "save"
    assert main(["train", *tiny_args(*tiny_data, save, epochs=1)]) == 0
    (save / "r" / "best_mlp_fold_1.pth").unlink()

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
            _select_path(app, save / "r")
            await pilot.press("e")
            # `kfold eval` exits 1 here; the app still shows what was scored.
            await wait_for(pilot, lambda: isinstance(app.screen, EvalResultScreen), timeout=120)
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 3, what="the eval table")
            names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            assert names == ["fold 2", "mean", "std"]
            assert text_of(app.screen.query_one("#eval-missing")) == (
                "⚠ mean over 1 of 2 folds; left out: fold 1 (best_mlp_fold_1.pth is missing)"
            )

    asyncio.run(scenario())
