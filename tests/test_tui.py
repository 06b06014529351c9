"""The real app, driven headless with run_test and Pilot on tiny data (CPU, seconds)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ENV, tiny_args
from killrun import assert_same_run, events
from textual.widgets import DataTable, Input, Select, Tree
from tui_helpers import SLOW_WRITES, prefill, start_from_form, text_of, wait_for

from engine.cli import main
from tui.app import KfoldApp
from tui.screens.browser import BrowserScreen
from tui.screens.eval_result import EvalResultScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.train_form import TrainFormScreen
from tui.widgets.fold_panel import FoldPanel
from tui.widgets.loss_table import LossTable


def _set(app: KfoldApp, field: str, value: str) -> None:
    app.screen.query_one(f"#f-{field}", Input).value = value


def _why(app: KfoldApp, field: str) -> str:
    return text_of(app.screen.query_one(f"#why-{field}"))


def _run(coro: Any) -> None:
    asyncio.run(coro)


async def _finished(pilot: Any, app: KfoldApp, status: str = "finished") -> MonitorScreen:
    try:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the monitor")
    except AssertionError as exc:
        shown = [text_of(w) for w in app.screen.query("#form-status, #dataset")]
        raise AssertionError(f"{exc}; on {app.screen}: {shown}") from None
    monitor = app.screen
    assert isinstance(monitor, MonitorScreen)
    await wait_for(pilot, lambda: monitor.view.status == status, what=f"status {status}")
    await pilot.pause(0.2)
    return monitor


def test_form_explains_invalid_values_and_refuses_to_start(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    async def scenario() -> None:
        app = KfoldApp(prefill(tiny_data, tmp_path / "save"))
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TrainFormScreen))
            form = app.screen
            assert isinstance(form, TrainFormScreen)
            await wait_for(pilot, lambda: form.dataset_sequences == 8, what="dataset summary")
            summary = text_of(form.query_one("#dataset"))
            assert "8 sequences | 3 input columns (f0, f1, f2)" in summary
            _set(app, "epochs", "ten")
            await pilot.pause()
            assert _why(app, "epochs") == "✗ must be a whole number"
            _set(app, "epochs", "2")
            _set(app, "lr", "-1")
            await pilot.pause()
            assert _why(app, "lr").startswith("✗ must be > 0")
            _set(app, "lr", "0.01")
            form.query_one("#f-model", Select).value = "transformer"
            _set(app, "hidden_size", "10")
            _set(app, "nhead", "4")
            await pilot.pause()
            assert form.query_one("#row-nhead").display
            assert _why(app, "nhead") == "✗ hidden_size 10 must be divisible by nhead 4"
            _set(app, "devices", "tpu,tpu")
            await pilot.pause()
            assert _why(app, "devices").startswith("✗ must be auto or a list like")
            _set(app, "devices", "")
            _set(app, "k_folds", "9")
            await pilot.pause()
            assert _why(app, "k_folds") == "✗ only 8 sequences"
            (tmp_path / "save" / "taken").mkdir(parents=True)
            (tmp_path / "save" / "taken" / "run.json").write_text("{}")
            _set(app, "run", "taken")
            await pilot.pause()
            assert _why(app, "run") == "✗ a run of this name exists; choose another"
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, TrainFormScreen)
            assert "Cannot start" in text_of(form.query_one("#form-status"))
            assert not (tmp_path / "save" / "r").exists()
            form.query_one("#f-model", Select).value = "lstm"
            await pilot.pause()
            assert not form.query_one("#row-nhead").display

    _run(scenario())


def test_train_from_the_form_and_watch_it_finish(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    async def scenario() -> None:
        app = KfoldApp(prefill(tiny_data, tmp_path / "save"))
        async with app.run_test(size=(100, 30)) as pilot:
            form = app.screen
            assert isinstance(form, TrainFormScreen)
            await wait_for(pilot, lambda: form.dataset_sequences == 8, what="dataset summary")
            await pilot.press("ctrl+s")
            monitor = await _finished(pilot, app)
            for k in (1, 2):
                panel = text_of(monitor.query_one(f"#fold-{k}", FoldPanel))
                assert f"fold {k} finished" in panel and "epoch 2/2" in panel
            manifest = json.loads((tmp_path / "save" / "r" / "run.json").read_text())
            table = monitor.query_one(LossTable)
            assert table.row_count == 2
            for fold in manifest["folds"]:
                k, best = fold["fold"], fold["best_epoch"]
                cell = str(table.get_cell(str(best), f"f{k}"))
                assert cell.endswith("*")
                assert cell.startswith(f"{fold['best_val_loss']:.4f}")
            cv = text_of(monitor.query_one("#cv-line"))
            assert f"CV val loss {manifest['summary']['cv_mean']:.4f}" in cv
            await pilot.press("c")
            await pilot.pause()
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
            runs = app.screen.query_one("#runs", DataTable)
            assert runs.get_row("r")[2] == "finished"

    _run(scenario())


def test_stop_midway_then_resume_from_the_app_matches_an_uninterrupted_run(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: Any
) -> None:
    for key, value in SLOW_WRITES.items():
        monkeypatch.setenv(key, value)

    async def scenario() -> None:
        app = KfoldApp(prefill(tiny_data, tmp_path / "save", epochs=4, model="gru"))
        async with app.run_test(size=(100, 30)) as pilot:
            monitor = await start_from_form(pilot, app)
            await wait_for(
                pilot,
                lambda: monitor.view.folds.get(1) is not None and monitor.view.folds[1].epoch >= 2,
                what="fold 1 epoch 2",
            )
            await pilot.press("s")
            await wait_for(pilot, lambda: monitor.view.status == "interrupted")
            await wait_for(pilot, lambda: monitor.live_pid is None and monitor._proc_done())
            manifest = json.loads((tmp_path / "save" / "r" / "run.json").read_text())
            assert manifest["status"] == "interrupted"
            assert "r resumes" in text_of(monitor.query_one("#run-head"))
            await pilot.press("r")
            await _finished(pilot, app)

    _run(scenario())
    monkeypatch.delenv("KFOLD_TEST_WRITE_DELAY")
    ref = tmp_path / "ref"
    args = tiny_args(*tiny_data, ref, model="gru", epochs=4, batch_size=3)
    assert main(["train", *args]) == 0
    assert [e["event"] for e in events(tmp_path / "save" / "r")].count("run_started") == 2
    assert_same_run(ref / "r", tmp_path / "save" / "r", "gru", folds=2)


def _select_path(app: KfoldApp, path: Path) -> None:
    tree = app.screen.query_one(Tree)

    def walk(node: Any) -> Any:
        if node.data == path:
            return node
        for child in node.children:
            found = walk(child)
            if found is not None:
                return found
        return None

    node = walk(tree.root)
    assert node is not None, f"{path} not in the tree"
    tree.move_cursor(node)


def test_browser_inspects_checkpoints_survives_corrupt_files_and_evaluates(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "save"
    assert main(["train", *tiny_args(*tiny_data, save, epochs=2)]) == 0
    (save / "broken.pth").write_bytes(b"PK\x03\x04 not really a zip")
    (save / "damaged").mkdir()
    (save / "damaged" / "run.json").write_text('{"format_version": 1}')
    manifest = json.loads((save / "r" / "run.json").read_text())

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
            browser = app.screen
            detail = browser.query_one("#detail")
            _select_path(app, save / "r" / "best_mlp_fold_1.pth")
            await wait_for(pilot, lambda: "kind" in text_of(detail), what="inspect")
            text = text_of(detail)
            assert "best" in text and "fold" in text and "mlp" in text
            assert f"{manifest['folds'][0]['best_val_loss']:.4f}" in text
            assert "net.0.weight  8x3  float32" in text
            _select_path(app, save / "broken.pth")
            await wait_for(pilot, lambda: "✗" in text_of(detail), what="the corrupt file")
            assert "truncated or corrupt" in text_of(detail)
            _select_path(app, save / "damaged")
            await wait_for(pilot, lambda: "damaged" in text_of(detail), what="damaged run")
            _select_path(app, save / "r")
            await pilot.press("e")
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, EvalResultScreen),
                timeout=120,
                what="eval results",
            )
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 4, what="the eval table")
            names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            assert names == ["fold 1", "fold 2", "mean", "std"]
            loss = str(table.get_row_at(0)[2])
            assert loss == f"{manifest['folds'][0]['best_val_loss']:.4f}"

    _run(scenario())


def test_app_start_up_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from tui.app import KfoldApp\n"
        "async def go():\n"
        f"    app = KfoldApp({{'model_save_dir': {str(tmp_path)!r}}})\n"
        "    async with app.run_test() as pilot:\n"
        "        await pilot.pause(0.3)\n"
        "        assert 'torch' not in sys.modules, 'torch imported at start-up'\n"
        "asyncio.run(go())\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr


def _write_fake_run(run_dir: Path, epochs: int, start: int = 1) -> None:
    from engine.run import EventLog

    run_dir.mkdir(parents=True, exist_ok=True)
    log = EventLog(run_dir / "events.jsonl", run_dir.name)
    if start == 1:
        log.emit(
            "run_started",
            pid=1,
            resumed=False,
            device="cpu",
            device_name="cpu",
            folds=1,
            epochs=epochs * 2,
            model="mlp",
            sequences=4,
            parameters=10,
        )
        log.emit("fold_started", fold=1, epochs=epochs * 2, start_epoch=1)
    for e in range(start, start + epochs):
        log.emit(
            "epoch_ended",
            fold=1,
            epoch=e,
            epochs=epochs * 2,
            train_loss=1.0,
            val_loss=1.0 / e,
            best_val_loss=1.0 / e,
            best_epoch=e,
            is_best=True,
            lr=0.1,
            seconds=0.001,
        )
    log.close()


def test_a_flood_of_epochs_reaches_the_monitor_in_a_few_messages(tmp_path: Path) -> None:
    run_dir = tmp_path / "save" / "flood"
    _write_fake_run(run_dir, 3000)
    followed: list[object] = []

    def hook(message: object) -> None:
        if isinstance(message, MonitorScreen.Followed):
            followed.append(message)

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(tmp_path / "save")})
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            app.open_monitor(run_dir)
            await wait_for(pilot, lambda: bool(app.screen.query(LossTable)))
            table = app.screen.query_one(LossTable)
            await wait_for(pilot, lambda: table.row_count == 3000, what="3000 rows")
            _write_fake_run(run_dir, 3000, start=3001)
            await wait_for(pilot, lambda: table.row_count == 6000, what="6000 rows")
            assert str(table.get_cell("6000", "f1")).endswith("*")
            assert not str(table.get_cell("5999", "f1")).endswith("*")
            panel = text_of(app.screen.query_one("#fold-1", FoldPanel))
            assert "epoch 6000/6000" in panel

    _run(scenario())
    assert len(followed) <= 20, f"{len(followed)} messages for 6000 events"


def test_browser_exports_predictions_and_deletes_after_confirmation(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "save"
    assert main(["train", *tiny_args(*tiny_data, save, epochs=1)]) == 0
    out = tmp_path / "preds"

    async def scenario() -> None:
        app = KfoldApp({"model_save_dir": str(save)})
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
            _select_path(app, save / "r")
            await pilot.press("p")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PathsScreen")
            app.screen.query_one(Input).value = str(out)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, EvalResultScreen), timeout=120)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
            _select_path(app, save / "r" / "last_mlp_fold_2.pth")
            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
            await pilot.press("n")
            await pilot.pause(0.2)
            assert (save / "r" / "last_mlp_fold_2.pth").exists()
            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
            await pilot.press("y")
            await wait_for(pilot, lambda: not (save / "r" / "last_mlp_fold_2.pth").exists())

    _run(scenario())
    assert sorted(p.name for p in out.iterdir()) == [f"s{i:03d}.csv" for i in range(8)]
