"""Following a run folder: batches, torn lines, and a view rebuilt from the folder alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from conftest import tiny_args

from engine.cli import main
from engine.run import EventLog
from tui.follow import EventTail, FollowUpdate, RunFollower
from tui.runview import RunView


def test_a_flood_of_events_arrives_as_one_batch(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r")
    for i in range(5000):
        log.emit(
            "epoch_ended",
            fold=1,
            epoch=i + 1,
            epochs=5000,
            train_loss=1.0,
            val_loss=1.0 / (i + 1),
            best_val_loss=1.0 / (i + 1),
            best_epoch=i + 1,
            is_best=True,
            lr=0.1,
            seconds=0.001,
        )
    updates: list[FollowUpdate] = []
    stop = threading.Event()
    follower = RunFollower(tmp_path, updates.append, stop, interval=0.01)
    updates.append(follower.poll())
    assert len(updates) == 1 and len(updates[0].events) == 5000
    assert follower.poll().events == []
    view = RunView(tmp_path)
    for e in updates[0].events:
        view.apply(e)
    assert view.folds[1].epoch == 5000 and len(view.folds[1].val_history) == 5000


def test_a_half_written_line_waits_until_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = json.dumps({"event": "log", "message": "a"}) + "\n"
    torn = json.dumps({"event": "log", "message": "b"})
    path.write_text(whole + torn[:10])
    tail = EventTail(path)
    assert [e["message"] for e in tail.read_new()] == ["a"]
    with open(path, "a") as fh:
        fh.write(torn[10:] + "\n" + "{garbage\n")
    assert [e["message"] for e in tail.read_new()] == ["b"]


def test_the_view_is_rebuilt_from_the_run_folder(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    assert main(["train", *tiny_args(*tiny_data, tmp_path, epochs=3)]) == 0
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    view = RunView.from_folder(tmp_path / "r")
    assert view.status == "finished"
    assert [f.status for f in view.folds.values()] == ["finished", "finished"]
    for entry in manifest["folds"]:
        f = view.folds[entry["fold"]]
        assert (f.best_val_loss, f.best_epoch, f.epoch) == (
            entry["best_val_loss"],
            entry["best_epoch"],
            3,
        )
    assert view.cv_mean == manifest["summary"]["cv_mean"]
    assert any("run finished" in line for line in view.log)


def test_elapsed_counts_a_folds_epochs_from_before_a_resume(tmp_path: Path) -> None:
    view = RunView(tmp_path)

    def ended(epoch: int, seconds: float) -> dict:
        return {
            "event": "epoch_ended",
            "fold": 1,
            "epoch": epoch,
            "epochs": 4,
            "val_loss": 1.0,
            "best_val_loss": 1.0,
            "best_epoch": 1,
            "seconds": seconds,
        }

    view.apply({"event": "fold_started", "fold": 1, "epochs": 4, "start_epoch": 1, "time": 100.0})
    view.apply(ended(1, 2.0))
    view.apply(ended(2, 3.0))
    view.apply(ended(3, 4.0))  # trained, but not on disk when the process died: replayed
    view.apply({"event": "run_finished", "status": "interrupted"})
    fold = view.folds[1]
    assert fold.elapsed_seconds == 9.0
    view.apply({"event": "fold_started", "fold": 1, "epochs": 4, "start_epoch": 3, "time": 200.0})
    assert fold.earlier_seconds == 5.0  # epochs 1 and 2; epoch 3 is trained again
    view.apply(ended(3, 4.5))
    view.apply(ended(4, 4.0))
    view.apply({"event": "fold_finished", "fold": 1, "status": "finished"})
    assert fold.elapsed_seconds == 13.5
